// The attention explorer: which background patch a filled pixel was borrowed from.
//
// The server sends contextual attention's offsets as int16 (2, h, w): (dy, dx) in feature
// pixels of the generator's 1/4-resolution grid, for the image at its working size. A hole
// pixel follows its offset exactly as inpaintkit.model.visualize.attended_overlay (appendix C)
// does: nearest feature cell, offset scaled by the image/grid size ratio.

export class Attention {
  /**
   * @param {{grid: number[], work: number[], patch: number}} meta from the result's JSON
   * @param {ArrayBuffer} buffer the offsets, int16 little-endian, (2, h, w)
   * @param {number} width the result's full-resolution size
   * @param {number} height
   */
  constructor(meta, buffer, width, height) {
    [this.gridH, this.gridW] = meta.grid;
    [this.workH, this.workW] = meta.work;
    this.patch = meta.patch || 0;
    this.offsets = new Int16Array(buffer);
    if (this.offsets.length !== 2 * this.gridH * this.gridW) throw new Error("offsets of the wrong size");
    this.width = width;
    this.height = height;
  }

  /**
   * Where the pixel at image position (x, y) was borrowed from:
   * {x, y, size} (centre and side of the attended patch, image pixels), or null where nothing
   * was borrowed (a known pixel, or a hole pixel without any valid background patch).
   */
  source(x, y) {
    const sx = this.workW / this.width; // full resolution -> working resolution
    const sy = this.workH / this.height;
    const wx = Math.floor(x * sx);
    const wy = Math.floor(y * sy);
    if (wx < 0 || wy < 0 || wx >= this.workW || wy >= this.workH) return null;
    const fy = Math.min(Math.floor((wy * this.gridH) / this.workH), this.gridH - 1);
    const fx = Math.min(Math.floor((wx * this.gridW) / this.workW), this.gridW - 1);
    const dy = this.offsets[fy * this.gridW + fx];
    const dx = this.offsets[this.gridH * this.gridW + fy * this.gridW + fx];
    if (dy === 0 && dx === 0) return null;
    const ty = wy + (dy * this.workH) / this.gridH;
    const tx = wx + (dx * this.workW) / this.gridW;
    return { x: (tx + 0.5) / sx, y: (ty + 0.5) / sy, size: this.patch / sx };
  }

  /** Draw the link from (x, y) to its source: the patch outlined, a line, the pixel marked. */
  draw(ctx, x, y, zoom, pinned) {
    const from = this.source(x, y);
    if (!from) return null;
    const px = Math.floor(x) + 0.5;
    const py = Math.floor(y) + 0.5;
    const line = 2 / zoom;
    const half = Math.max(from.size, 3 / zoom) / 2;
    ctx.save();
    ctx.lineWidth = line;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
    ctx.strokeRect(from.x - half - line, from.y - half - line, 2 * half + 2 * line, 2 * half + 2 * line);
    ctx.fillStyle = "rgba(255, 230, 0, 0.35)";
    ctx.strokeStyle = "rgb(255, 230, 0)";
    ctx.fillRect(from.x - half, from.y - half, 2 * half, 2 * half);
    ctx.strokeRect(from.x - half, from.y - half, 2 * half, 2 * half);
    ctx.setLineDash([6 / zoom, 4 / zoom]);
    ctx.beginPath();
    ctx.moveTo(px, py);
    ctx.lineTo(from.x, from.y);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = pinned ? "rgb(79, 140, 255)" : "white";
    ctx.beginPath();
    ctx.arc(px, py, 4 / zoom, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    ctx.restore();
    return from;
  }
}
