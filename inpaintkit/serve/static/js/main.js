// inpaintkit serve: the page. Open an image, paint the mask, fill, compare, explore attention.
//
// States (also on <body data-state>): "empty" (nothing open), "edit" (painting the mask),
// "filling" (a fill is queued or running), "result" (the fill is shown).

import { ApiError, api, canvasBlob, download, loadImage, stem } from "./api.js";
import { Attention } from "./attention.js";
import { MaskLayer } from "./mask.js";
import { Viewport } from "./viewport.js";

const $ = (selector) => document.querySelector(selector);
const $$ = (selector) => [...document.querySelectorAll(selector)];

const state = {
  mode: "empty",
  image: null, // {id, name, width, height, img, path}: the image being edited (path: in FOLDER)
  mask: null, // MaskLayer
  result: null, // {id, name, width, height, img, attention, pictures: {flow, attended}}
  tool: "brush",
  brush: 24,
  maskOpacity: 0.55,
  overlay: "none",
  overlayOpacity: 0.85,
  compare: 1, // where the before/after line is, as a fraction of the width: after on its left
  hover: null, // image position under the mouse
  pinned: null, // image position clicked in the attention explorer
  drag: null,
  space: false,
  folderItems: [],
};

// Masks painted on images the page has left, not saved: image key -> MaskLayer. Opening the
// image again brings its mask back (with its history). Bounded by their pixels, oldest first.
const keptMasks = new Map();
const KEPT_PIXELS = 50e6;

const view = new Viewport($("#view"), draw, (zoom) => {
  $("#zoom-value").textContent = `${Math.round(zoom * 100)}%`;
});

// ------------------------------------------------------------------ messages

function showError(error) {
  const text = error instanceof Error ? error.message : String(error);
  $("#message-text").textContent = text;
  $("#message").hidden = false;
}

function clearError() {
  $("#message").hidden = true;
}

function setStatus(text) {
  $("#status").textContent = text;
}

/** An image from the server, with its error message when it cannot be had. */
async function fetchImage(url) {
  const response = await api(url);
  const objectUrl = URL.createObjectURL(await response.blob());
  try {
    return await loadImage(objectUrl);
  } finally {
    URL.revokeObjectURL(objectUrl);
  }
}

// ------------------------------------------------------------------ mode and controls

function setMode(mode) {
  state.mode = mode;
  document.body.dataset.state = mode;
  const editing = mode === "edit";
  $("#edit-tools").hidden = !(editing || mode === "filling");
  $("#result-tools").hidden = mode !== "result";
  $("#attention-tools").hidden = !(mode === "result" && state.result && state.result.attention);
  $("#save-mask").hidden = !(state.image && state.image.path);
  updateButtons();
  view.redraw();
}

function updateButtons() {
  const mask = state.mask;
  const editing = state.mode === "edit";
  $("#undo").disabled = !(editing && mask && mask.canUndo);
  $("#redo").disabled = !(editing && mask && mask.canRedo);
  $("#clear").disabled = !editing;
  // Fill needs a hole: the same rule for an opened file, a folder image, a kept result, undo.
  $("#fill").disabled = !(editing && mask && !mask.isEmpty());
}

function onMaskChange() {
  updateButtons();
  view.redraw();
}

function selectTool(tool) {
  state.tool = tool;
  for (const button of $$(".tool")) button.classList.toggle("active", button.dataset.tool === tool);
  view.redraw();
}

function setBrush(size) {
  state.brush = Math.max(2, Math.min(200, Math.round(size)));
  $("#brush-size").value = state.brush;
  $("#brush-size-value").textContent = state.brush;
  view.redraw();
}

async function selectOverlay(kind) {
  state.overlay = kind;
  for (const button of $$(".overlay")) button.classList.toggle("active", button.dataset.overlay === kind);
  const result = state.result;
  if (kind !== "none" && result && !result.pictures[kind]) {
    const file = kind === "flow" ? "flow.png" : "overlay.png";
    try {
      result.pictures[kind] = await fetchImage(`/api/images/${result.id}/${file}`);
    } catch (error) {
      showError(error);
    }
  }
  view.redraw();
}

// ------------------------------------------------------------------ drawing

function draw(ctx) {
  const { image, result } = state;
  if (!image) return;
  const zoom = view.zoom;
  if (state.mode === "result" && result) {
    // The before/after line: the result on its left, the image and its mask on its right.
    ctx.drawImage(result.img, 0, 0);
    const split = state.compare * result.width;
    if (split < result.width) {
      ctx.save();
      ctx.beginPath();
      ctx.rect(split, 0, result.width - split, result.height);
      ctx.clip();
      ctx.drawImage(image.img, 0, 0);
      ctx.globalAlpha = state.maskOpacity;
      ctx.drawImage(state.mask.canvas, 0, 0);
      ctx.restore();
    }
    const picture = result.pictures[state.overlay];
    if (state.overlay !== "none" && picture) {
      ctx.save();
      ctx.globalAlpha = state.overlayOpacity;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(picture, 0, 0, result.width, result.height);
      ctx.restore();
    }
    if (split > 0 && split < result.width) drawCompareLine(ctx, split, result.height, zoom);
    const point = state.pinned || state.hover;
    if (point && result.attention) result.attention.draw(ctx, point.x, point.y, zoom, Boolean(state.pinned));
    return;
  }
  ctx.drawImage(image.img, 0, 0);
  ctx.globalAlpha = state.maskOpacity;
  ctx.drawImage(state.mask.canvas, 0, 0);
  ctx.globalAlpha = 1;
  const drag = state.drag;
  if (drag && drag.kind === "rect") {
    ctx.save();
    ctx.lineWidth = 1.5 / zoom;
    ctx.setLineDash([5 / zoom, 4 / zoom]);
    ctx.strokeStyle = "white";
    ctx.strokeRect(drag.start.x, drag.start.y, drag.last.x - drag.start.x, drag.last.y - drag.start.y);
    ctx.restore();
  }
  if (state.hover && state.mode === "edit" && (state.tool === "brush" || state.tool === "eraser") && !state.space) {
    ctx.save();
    ctx.beginPath();
    ctx.arc(state.hover.x, state.hover.y, state.brush / 2, 0, 2 * Math.PI);
    ctx.lineWidth = 1.5 / zoom;
    ctx.strokeStyle = "black";
    ctx.stroke();
    ctx.lineWidth = 0.75 / zoom;
    ctx.strokeStyle = "white";
    ctx.stroke();
    ctx.restore();
  }
}

/** The before/after line at image column `x`, labelled at the top (sizes in screen pixels). */
function drawCompareLine(ctx, x, height, zoom) {
  const px = 1 / zoom;
  ctx.save();
  ctx.fillStyle = "white";
  ctx.fillRect(x - px, 0, 2 * px, height);
  ctx.font = `${12 * px}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const [text, side] of [["After", -1], ["Before", 1]]) {
    const width = ctx.measureText(text).width;
    const left = side < 0 ? x - 8 * px - width : x + 8 * px;
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(left - 4 * px, 4 * px, width + 8 * px, 20 * px);
    ctx.fillStyle = "white";
    ctx.fillText(text, left, 8 * px);
  }
  ctx.restore();
}

/** Move the before/after line to `fraction` of the width (0: all before, 1: all after). */
function setCompare(fraction) {
  state.compare = Math.min(1, Math.max(0, fraction));
  $("#compare").value = Math.round(state.compare * 100);
  view.redraw();
}

function describeAttention() {
  const result = state.result;
  const point = state.pinned || state.hover;
  let text = "";
  if (point && result && result.attention) {
    const from = result.attention.source(point.x, point.y);
    if (from) {
      text = `(${Math.floor(point.x)}, ${Math.floor(point.y)}) borrowed from the ${Math.round(from.size)}-pixel patch around (${Math.floor(from.x)}, ${Math.floor(from.y)})`;
    }
  }
  $("#attention-info").textContent = text;
}

// ------------------------------------------------------------------ pointer and keys

const canvas = $("#view");

canvas.addEventListener("pointerdown", (event) => {
  if (!state.image || state.mode === "empty") return;
  canvas.setPointerCapture(event.pointerId);
  const point = view.toImage(event.clientX, event.clientY);
  const client = { x: event.clientX, y: event.clientY };
  const panning = event.button === 1 || state.space || state.tool === "pan";
  if (panning || (state.mode !== "edit" && state.mode !== "result")) {
    state.drag = { kind: "pan", client };
  } else if (state.mode === "result") {
    state.drag = { kind: "pin", client, start: point };
  } else if (event.button !== 0) {
    return;
  } else if (state.tool === "rect") {
    state.mask.begin();
    state.drag = { kind: "rect", start: point, last: point };
  } else {
    const erase = state.tool === "eraser";
    state.mask.begin();
    state.mask.line(point.x, point.y, point.x, point.y, state.brush, erase);
    state.drag = { kind: "paint", last: point, erase };
  }
  event.preventDefault();
});

canvas.addEventListener("pointermove", (event) => {
  state.hover = state.image ? view.toImage(event.clientX, event.clientY) : null;
  const drag = state.drag;
  if (drag && drag.kind === "pan") {
    view.panBy(event.clientX - drag.client.x, event.clientY - drag.client.y);
    drag.client = { x: event.clientX, y: event.clientY };
  } else if (drag && drag.kind === "paint") {
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const point = view.toImage(e.clientX, e.clientY);
      state.mask.line(drag.last.x, drag.last.y, point.x, point.y, state.brush, drag.erase);
      drag.last = point;
    }
  } else if (drag && drag.kind === "rect") {
    drag.last = state.hover;
  } else if (drag && drag.kind === "pin" && Math.hypot(event.clientX - drag.client.x, event.clientY - drag.client.y) > 4) {
    drag.kind = "compare"; // a click pins a pixel, a drag moves the before/after line
    canvas.classList.add("comparing");
  }
  if (drag && drag.kind === "compare") setCompare(state.hover.x / state.result.width);
  if (state.mode === "result") describeAttention();
  view.redraw();
});

function endDrag(event) {
  const drag = state.drag;
  state.drag = null;
  if (!drag) return;
  if (drag.kind === "paint") {
    state.mask.commit();
  } else if (drag.kind === "rect") {
    const end = view.toImage(event.clientX, event.clientY);
    state.mask.rect(drag.start.x, drag.start.y, end.x, end.y, false);
    state.mask.commit();
  } else if (drag.kind === "compare") {
    canvas.classList.remove("comparing");
  } else if (drag.kind === "pin") {
    const moved = Math.hypot(event.clientX - drag.client.x, event.clientY - drag.client.y) > 4;
    if (!moved) {
      state.pinned = state.pinned ? null : drag.start;
      describeAttention();
    }
  }
  view.redraw();
}

canvas.addEventListener("pointerup", endDrag);
canvas.addEventListener("pointercancel", endDrag);
canvas.addEventListener("pointerleave", () => {
  state.hover = null;
  if (state.mode === "result") describeAttention();
  view.redraw();
});

canvas.addEventListener(
  "wheel",
  (event) => {
    if (!state.image) return;
    event.preventDefault();
    view.zoomBy(Math.exp(-event.deltaY * 0.0015), event.clientX, event.clientY);
  },
  { passive: false },
);

function undo() {
  if (state.mode === "edit" && state.mask) state.mask.undo();
}

function redo() {
  if (state.mode === "edit" && state.mask) state.mask.redo();
}

window.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target instanceof HTMLInputElement && target.type !== "range";
  if (event.key === "Enter" && !typing && !(target instanceof HTMLButtonElement) && !event.ctrlKey && !event.metaKey && !event.altKey) {
    // Enter fills from anywhere but a field or a button (Enter presses that button): also
    // while the Method or Size list has the focus.
    event.preventDefault();
    fill();
    return;
  }
  if (target instanceof HTMLSelectElement || typing) return;
  const key = event.key.toLowerCase();
  if (event.ctrlKey || event.metaKey) {
    if (key === "z") {
      event.preventDefault();
      if (event.shiftKey) redo();
      else undo();
    } else if (key === "y") {
      event.preventDefault();
      redo();
    }
    return;
  }
  if (event.altKey) return;
  const tools = { b: "brush", e: "eraser", r: "rect", h: "pan" };
  if (tools[key]) selectTool(tools[key]);
  else if (key === "[") setBrush(state.brush / 1.25);
  else if (key === "]") setBrush(state.brush * 1.25);
  else if (key === "f") view.fit();
  else if (key === "1") view.setZoom(1, canvas.clientWidth / 2, canvas.clientHeight / 2, true);
  else if (key === " ") {
    state.space = true;
    event.preventDefault();
  } else return;
});

window.addEventListener("keyup", (event) => {
  if (event.key === " ") state.space = false;
});

// ------------------------------------------------------------------ images

/** What an image's kept mask is found under: its path in FOLDER, else its name and size
 * (the same file opened again), or the result it is. */
function imageKey(meta, path) {
  return path ? `folder:${path}` : `file:${meta.name}:${meta.width}x${meta.height}`;
}

/** Keep the mask of the image being left if it has unsaved changes (keptMasks). */
function keepMask() {
  const { image, mask } = state;
  if (!image || !mask || !mask.dirty) return;
  keptMasks.delete(image.key);
  keptMasks.set(image.key, mask);
  let pixels = 0;
  for (const kept of keptMasks.values()) pixels += kept.width * kept.height;
  for (const [key, kept] of keptMasks) {
    if (pixels <= KEPT_PIXELS || key === image.key) break;
    keptMasks.delete(key);
    pixels -= kept.width * kept.height;
  }
  markUnsaved();
}

/** Folder images whose painted mask is kept but not saved are marked in the list. */
function markUnsaved() {
  for (const item of $$("#folder-list li")) {
    const unsaved = keptMasks.has(`folder:${item.dataset.path}`);
    item.classList.toggle("unsaved", unsaved);
    item.title = unsaved ? "Its painted mask is kept but not saved: open it to go on, Save mask to write it" : "";
  }
}

/** Show an image for editing; returns whether a mask painted on it before came back. */
async function showImage(meta, maskImage = null, path = null) {
  const img = await fetchImage(`/api/images/${meta.id}/image.png`);
  keepMask();
  const key = imageKey(meta, path);
  const kept = keptMasks.get(key);
  keptMasks.delete(key);
  const restored = Boolean(kept && kept.width === meta.width && kept.height === meta.height);
  state.image = { ...meta, img, path, key };
  if (restored) {
    state.mask = kept;
  } else {
    state.mask = new MaskLayer(meta.width, meta.height, onMaskChange);
    if (maskImage) state.mask.load(maskImage);
  }
  state.result = null;
  state.pinned = null;
  for (const item of $$("#folder-list li")) item.classList.toggle("current", item.dataset.path === path);
  markUnsaved();
  view.setContent(meta.width, meta.height);
  setMode("edit");
  return restored;
}

const RESTORED = " (the mask you painted on it before is back, not saved)";

async function openFile(file) {
  if (!file) return;
  clearError();
  setStatus(`Opening ${file.name}…`);
  try {
    const meta = await api(`/api/images?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
      type: file.type || "application/octet-stream",
    });
    const restored = await showImage(meta);
    setStatus(`${meta.name}: ${meta.width}×${meta.height}${restored ? RESTORED : ""}`);
  } catch (error) {
    setStatus("");
    showError(error);
  }
}

// ------------------------------------------------------------------ fill

let progressTimer = 0;

function showProgress(job) {
  const bar = $("#progress-bar");
  $("#progress").hidden = false;
  cancelAnimationFrame(progressTimer);
  if (job.state === "queued") {
    bar.removeAttribute("value");
    $("#progress-text").textContent = job.ahead ? `Queued: ${job.ahead} ahead` : "Queued";
    return;
  }
  const started = performance.now() - job.elapsed * 1000;
  // The estimate is this server's measured seconds per working pixel (serve/estimate.py);
  // the page says what it rests on.
  $("#progress").title = job.estimate ? `Estimate: ${job.estimate_basis}` : "No estimate yet: this server has not timed this method yet";
  const tick = () => {
    const seconds = (performance.now() - started) / 1000;
    if (job.estimate) {
      bar.value = Math.min(0.97, seconds / job.estimate);
      $("#progress-text").textContent = `Filling… ${seconds.toFixed(1)} s of ~${job.estimate.toFixed(1)} s (measured here)`;
    } else {
      bar.removeAttribute("value");
      $("#progress-text").textContent = `Filling… ${seconds.toFixed(1)} s (no estimate yet)`;
    }
    progressTimer = requestAnimationFrame(tick);
  };
  tick();
}

function hideProgress() {
  cancelAnimationFrame(progressTimer);
  $("#progress").hidden = true;
}

async function fill() {
  if (state.mode !== "edit") return;
  clearError();
  if (state.mask.isEmpty()) {
    showError("Paint over what should be filled first.");
    return;
  }
  const blob = await canvasBlob(state.mask.toCanvas());
  const method = $("#method").value;
  // "auto", "original", "crop" or "resize:N": fill's --hd-strategy (and --max-size N).
  const [strategy, maxSize] = $("#size").value.split(":");
  const query = `image=${encodeURIComponent(state.image.id)}&method=${encodeURIComponent(method)}&hd_strategy=${strategy}` + (maxSize ? `&max_size=${maxSize}` : "");
  setMode("filling");
  const image = state.image;
  const started = performance.now();
  try {
    let job = await api(`/api/fill?${query}`, { method: "POST", body: blob, type: "image/png" });
    while (job.state === "queued" || job.state === "running") {
      showProgress(job);
      job = await api(`/api/jobs/${job.id}?wait=1`);
    }
    if (state.image !== image) return; // another image was opened meanwhile
    if (job.state === "failed") throw new ApiError(job.error);
    await showResult(job.result);
    // The fill's own time (the server's, as the estimate is) beside its estimate; a finished
    // job keeps both (a fast one may never be seen running).
    const against = job.estimate ? ` (the fill itself ${job.elapsed.toFixed(1)} s, estimated ${job.estimate.toFixed(1)} s)` : "";
    setStatus(`Filled with ${method} in ${((performance.now() - started) / 1000).toFixed(2)} s${against}`);
  } catch (error) {
    if (state.image !== image) return;
    setMode("edit");
    showError(error);
  } finally {
    hideProgress();
  }
}

async function showResult(meta) {
  const img = await fetchImage(`/api/images/${meta.id}/image.png`);
  let attention = null;
  if (meta.attention) {
    const response = await api(`/api/images/${meta.id}/offsets`);
    attention = new Attention(meta.attention, await response.arrayBuffer(), meta.width, meta.height);
  }
  state.result = { ...meta, img, attention, pictures: {} };
  state.pinned = null;
  setCompare(1); // the result shows whole, and the slider says "After"
  setMode("result");
  if (state.overlay !== "none") await selectOverlay(attention ? state.overlay : "none");
}

// ------------------------------------------------------------------ folder mode

async function loadFolder() {
  const data = await api("/api/folder");
  state.folderItems = data.items;
  $("#folder").hidden = false;
  $("#folder-name").textContent = `${data.name} (${data.items.length})`;
  const list = $("#folder-list");
  list.replaceChildren();
  const stamp = Date.now();
  for (const item of data.items) {
    const li = document.createElement("li");
    li.dataset.path = item.path;
    li.classList.toggle("current", Boolean(state.image && state.image.path === item.path));
    const thumb = document.createElement("img");
    thumb.loading = "lazy";
    thumb.alt = "";
    thumb.src = `/api/folder/thumb?path=${encodeURIComponent(item.path)}&v=${stamp}`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.path;
    const badge = document.createElement("span");
    badge.className = item.problem && item.mask === null && !item.problem.startsWith("no mask") ? "badge problem" : "badge";
    badge.textContent = item.mask ? `mask: ${item.mask.split("/").pop()}` : item.problem && !item.problem.startsWith("no mask") ? item.problem : "no mask yet";
    name.append(badge);
    li.append(thumb, name);
    li.addEventListener("click", () => openFolderItem(item));
    list.append(li);
  }
  markUnsaved();
}

async function openFolderItem(item) {
  clearError();
  setStatus(`Opening ${item.path}…`);
  try {
    const path = encodeURIComponent(item.path);
    const meta = await api(`/api/folder/open?path=${path}`, { method: "POST" });
    let maskImage = null;
    if (item.mask) {
      maskImage = await fetchImage(`/api/folder/mask?path=${path}&v=${Date.now()}`);
      if (maskImage.naturalWidth !== meta.width || maskImage.naturalHeight !== meta.height) {
        showError(`${item.mask} is ${maskImage.naturalWidth}×${maskImage.naturalHeight} but the image is ${meta.width}×${meta.height}: paint a new mask and save it`);
        maskImage = null;
      }
    }
    const restored = await showImage(meta, maskImage, item.path);
    setStatus(`${item.path}: ${meta.width}×${meta.height}${restored ? RESTORED : ""}`);
  } catch (error) {
    setStatus("");
    showError(error);
  }
}

async function saveMask() {
  if (!state.image || !state.image.path) return;
  clearError();
  try {
    const blob = await canvasBlob(state.mask.toCanvas());
    const answer = await api(`/api/folder/mask?path=${encodeURIComponent(state.image.path)}`, {
      method: "PUT",
      body: blob,
      type: "image/png",
    });
    state.mask.markSaved();
    setStatus(`Saved ${answer.saved}`);
    await loadFolder();
  } catch (error) {
    showError(error);
  }
}

// ------------------------------------------------------------------ wiring

function downloadMask() {
  if (!state.mask) return;
  canvasBlob(state.mask.toCanvas()).then((blob) => {
    const url = URL.createObjectURL(blob);
    download(url, `${stem(state.image.name)}_mask.png`);
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
}

$("#file").addEventListener("change", (event) => {
  openFile(event.target.files[0]);
  event.target.value = "";
});
$("#fill").addEventListener("click", fill);
$("#message-close").addEventListener("click", clearError);
for (const button of $$(".tool")) button.addEventListener("click", () => selectTool(button.dataset.tool));
for (const button of $$(".overlay")) button.addEventListener("click", () => selectOverlay(button.dataset.overlay));
$("#brush-size").addEventListener("input", (event) => setBrush(Number(event.target.value)));
$("#mask-opacity").addEventListener("input", (event) => {
  state.maskOpacity = Number(event.target.value) / 100;
  view.redraw();
});
$("#overlay-opacity").addEventListener("input", (event) => {
  state.overlayOpacity = Number(event.target.value) / 100;
  view.redraw();
});
$("#compare").addEventListener("input", (event) => setCompare(Number(event.target.value) / 100));
$("#undo").addEventListener("click", undo);
$("#redo").addEventListener("click", redo);
$("#clear").addEventListener("click", () => state.mask && state.mask.clear());
$("#zoom-fit").addEventListener("click", () => view.fit());
$("#zoom-1").addEventListener("click", () => view.setZoom(1, canvas.clientWidth / 2, canvas.clientHeight / 2, true));
$("#download-mask").addEventListener("click", downloadMask);
$("#save-mask").addEventListener("click", saveMask);
$("#download-result").addEventListener("click", () => {
  if (state.result) download(`/api/images/${state.result.id}/image.png`, `${stem(state.result.name)}_filled.png`);
});
$("#keep").addEventListener("click", async () => {
  const result = state.result;
  if (!result) return;
  keepMask(); // the mask of a folder image stays unsaved until it is saved
  state.image = { ...result, path: null, key: `result:${result.id}` }; // not FOLDER's file
  state.mask = new MaskLayer(result.width, result.height, onMaskChange);
  state.result = null;
  state.pinned = null;
  setMode("edit");
});
$("#back").addEventListener("click", () => {
  state.result = null;
  state.pinned = null;
  setMode("edit");
});

const stage = $("#stage");
stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  stage.classList.add("drag");
});
stage.addEventListener("dragleave", () => stage.classList.remove("drag"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("drag");
  openFile(event.dataTransfer.files[0]);
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

async function start() {
  $("#colorwheel").src = "/api/colorwheel.png?size=144";
  try {
    const info = await api("/api/info");
    const select = $("#method");
    for (const method of info.methods) {
      const option = new Option(method.available ? method.label : `${method.label} (unavailable)`, method.name);
      option.disabled = !method.available;
      option.title = method.reason || "";
      select.append(option);
    }
    // The server's HD strategy (serve --hd-strategy) is the Size list's first choice.
    const size = $("#size");
    if (info.hd_strategy && ![...size.options].some((o) => o.value === info.hd_strategy)) size.prepend(new Option(info.hd_strategy, info.hd_strategy));
    if (info.hd_strategy) size.value = info.hd_strategy;
    const usable = info.methods.find((m) => m.available);
    if (usable) select.value = usable.name;
    const missing = info.methods.filter((m) => !m.available);
    if (missing.length) showError(missing.map((m) => `${m.label} is unavailable: ${m.reason}`).join(" "));
    setStatus(`inpaintkit ${info.version} on ${info.device}`);
    if (info.folder !== null) await loadFolder();
  } catch (error) {
    showError(error);
  }
  setBrush(state.brush);
  performance.mark("inpaintkit-ready"); // benchmarks/bench_serve.py reads it
  document.body.dataset.ready = "true";
}

// For automation (the browser test, screenshots): read-only access to the page's state.
window.inpaintkit = {
  state,
  imageToClient: (x, y) => view.toClient(x, y),
};

start();
