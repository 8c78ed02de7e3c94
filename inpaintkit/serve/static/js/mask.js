// The mask being painted: a full-resolution canvas (opaque colour = hole) with undo/redo.
//
// Undo keeps, per operation, only the rectangle it changed (before and after), so long
// editing sessions on large photos stay small. Whether the mask is empty is known at every
// moment without reading the whole canvas (the Fill button follows it): each operation
// records it before and after, and only an erase over a non-empty mask scans the canvas.

export const MASK_COLOR = "rgb(255, 40, 40)";
const HISTORY_BYTES = 256 * 1024 * 1024;

function canvas(width, height) {
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

/** Whether mask pixels (ImageData) hold a hole pixel: alpha >= 50 %, as toCanvas() writes it. */
function hasHole(pixels) {
  const d = pixels.data;
  for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) return true;
  return false;
}

export class MaskLayer {
  /** @param {() => void} onChange called after every change (repaint, buttons) */
  constructor(width, height, onChange = () => {}) {
    this.width = width;
    this.height = height;
    this.canvas = canvas(width, height);
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.backup = canvas(width, height);
    this.backupCtx = this.backup.getContext("2d", { willReadFrequently: true });
    this.onChange = onChange;
    this.undoStack = [];
    this.redoStack = [];
    this.box = null; // what the operation in progress touched: [x0, y0, x1, y1]
    this.erased = false; // whether the operation in progress erased anything
    this.empty = true; // no hole pixel (as of the last committed operation)
    this.dirty = false; // changed since it was loaded or saved
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  // ---------------------------------------------------------------- painting

  /** Start an operation: remember the pixels it may change. */
  begin() {
    this.backupCtx.clearRect(0, 0, this.width, this.height);
    this.backupCtx.drawImage(this.canvas, 0, 0);
    this.box = null;
    this.erased = false;
  }

  touch(x0, y0, x1, y1) {
    const b = [Math.floor(x0), Math.floor(y0), Math.ceil(x1), Math.ceil(y1)];
    this.box = this.box
      ? [Math.min(this.box[0], b[0]), Math.min(this.box[1], b[1]), Math.max(this.box[2], b[2]), Math.max(this.box[3], b[3])]
      : b;
  }

  style(erase) {
    if (erase) this.erased = true;
    this.ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    this.ctx.strokeStyle = this.ctx.fillStyle = MASK_COLOR;
  }

  /** A brush (or eraser) segment from (x0, y0) to (x1, y1), `size` image pixels wide. */
  line(x0, y0, x1, y1, size, erase) {
    this.style(erase);
    const ctx = this.ctx;
    ctx.lineWidth = size;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    const r = size / 2 + 2;
    this.touch(Math.min(x0, x1) - r, Math.min(y0, y1) - r, Math.max(x0, x1) + r, Math.max(y0, y1) + r);
    this.onChange();
  }

  /** A filled (or erased) rectangle between two corners. */
  rect(x0, y0, x1, y1, erase) {
    this.style(erase);
    const [left, top] = [Math.round(Math.min(x0, x1)), Math.round(Math.min(y0, y1))];
    const [right, bottom] = [Math.round(Math.max(x0, x1)), Math.round(Math.max(y0, y1))];
    if (erase) this.ctx.clearRect(left, top, right - left, bottom - top);
    else this.ctx.fillRect(left, top, right - left, bottom - top);
    this.touch(left - 1, top - 1, right + 1, bottom + 1);
    this.onChange();
  }

  clear() {
    this.begin();
    this.erased = true;
    this.ctx.clearRect(0, 0, this.width, this.height);
    this.touch(0, 0, this.width, this.height);
    this.commit();
  }

  /** End an operation: record it for undo (nothing is recorded if nothing was touched). */
  commit() {
    if (!this.box) return;
    const x0 = Math.max(0, this.box[0]);
    const y0 = Math.max(0, this.box[1]);
    const x1 = Math.min(this.width, this.box[2]);
    const y1 = Math.min(this.height, this.box[3]);
    this.box = null;
    if (x1 <= x0 || y1 <= y0) return;
    const w = x1 - x0;
    const h = y1 - y0;
    const after = this.ctx.getImageData(x0, y0, w, h);
    const emptyBefore = this.empty;
    // Painting can only fill an empty mask inside the rectangle it touched; erasing can only
    // empty a mask, and then anywhere.
    if (this.erased) this.empty = emptyBefore || !hasHole(this.ctx.getImageData(0, 0, this.width, this.height));
    else this.empty = emptyBefore && !hasHole(after);
    this.erased = false;
    this.dirty = true;
    this.undoStack.push({
      x: x0,
      y: y0,
      before: this.backupCtx.getImageData(x0, y0, w, h),
      after,
      emptyBefore,
      emptyAfter: this.empty,
    });
    this.redoStack = [];
    let bytes = this.undoStack.reduce((sum, op) => sum + 2 * op.before.data.length, 0);
    while (bytes > HISTORY_BYTES && this.undoStack.length > 1) {
      bytes -= 2 * this.undoStack.shift().before.data.length;
    }
    this.onChange();
  }

  undo() {
    this.replay(this.undoStack, this.redoStack, "before");
  }

  redo() {
    this.replay(this.redoStack, this.undoStack, "after");
  }

  /** Move the last operation of `from` to `to`, restoring its `side` ("before" or "after"). */
  replay(from, to, side) {
    const op = from.pop();
    if (!op) return;
    this.ctx.putImageData(op[side], op.x, op.y);
    this.empty = side === "before" ? op.emptyBefore : op.emptyAfter;
    this.dirty = true;
    to.push(op);
    this.onChange();
  }

  // ---------------------------------------------------------------- files

  /** Replace the mask by a mask image (white = hole); history starts afresh. */
  load(image) {
    const source = canvas(this.width, this.height);
    const sctx = source.getContext("2d", { willReadFrequently: true });
    sctx.drawImage(image, 0, 0, this.width, this.height);
    const pixels = sctx.getImageData(0, 0, this.width, this.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const hole = d[i] + d[i + 1] + d[i + 2] > 3 * 127;
      d[i] = 255;
      d[i + 1] = 40;
      d[i + 2] = 40;
      d[i + 3] = hole ? 255 : 0;
    }
    this.ctx.globalCompositeOperation = "source-over";
    this.ctx.putImageData(pixels, 0, 0);
    this.empty = !hasHole(pixels);
    this.dirty = false;
    this.undoStack = [];
    this.redoStack = [];
    this.onChange();
  }

  /** The mask is now what is saved (its file was written). */
  markSaved() {
    this.dirty = false;
  }

  /** The mask as the files `fill` reads: white = hole (alpha >= 50%), black elsewhere. */
  toCanvas() {
    const out = canvas(this.width, this.height);
    const octx = out.getContext("2d");
    const pixels = this.ctx.getImageData(0, 0, this.width, this.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i + 3] >= 128 ? 255 : 0;
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
    }
    octx.putImageData(pixels, 0, 0);
    return out;
  }

  isEmpty() {
    return this.empty;
  }
}
