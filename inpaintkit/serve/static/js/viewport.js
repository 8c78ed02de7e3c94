// The stage: one canvas showing the image at some zoom and pan, redrawn on demand.

const MIN_ZOOM = 1 / 32;
const MAX_ZOOM = 32;
const FIT_MAX = 4; // fitting never enlarges a small image more than this

export class Viewport {
  /**
   * @param {HTMLCanvasElement} canvas the visible canvas, sized by CSS
   * @param {(ctx: CanvasRenderingContext2D) => void} draw paints the scene in image pixels
   * @param {(zoom: number) => void} onZoom told whenever the zoom changes
   */
  constructor(canvas, draw, onZoom = () => {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.draw = draw;
    this.onZoom = onZoom;
    this.width = 0; // content size, image pixels
    this.height = 0;
    this.zoom = 1;
    this.x = 0; // where the content's top-left corner is, in CSS pixels of the canvas
    this.y = 0;
    this.pending = false;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(rect.width * ratio));
    this.canvas.height = Math.max(1, Math.round(rect.height * ratio));
    this.redraw();
  }

  /** Show content of `width` x `height` image pixels, fitted. */
  setContent(width, height) {
    const same = width === this.width && height === this.height;
    this.width = width;
    this.height = height;
    if (!same) this.fit();
    this.redraw();
  }

  fit() {
    const rect = this.canvas.getBoundingClientRect();
    if (!this.width || !rect.width) return;
    const zoom = Math.min((rect.width - 24) / this.width, (rect.height - 24) / this.height, FIT_MAX);
    this.setZoom(Math.max(zoom, MIN_ZOOM), rect.width / 2, rect.height / 2, true);
  }

  /** Set the zoom keeping the content point under canvas point (cx, cy) in place (or centring). */
  setZoom(zoom, cx, cy, centre = false) {
    zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
    if (centre) {
      this.x = cx - (this.width * zoom) / 2;
      this.y = cy - (this.height * zoom) / 2;
    } else {
      this.x = cx - ((cx - this.x) * zoom) / this.zoom;
      this.y = cy - ((cy - this.y) * zoom) / this.zoom;
    }
    this.zoom = zoom;
    this.onZoom(zoom);
    this.redraw();
  }

  zoomBy(factor, clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    this.setZoom(this.zoom * factor, clientX - rect.left, clientY - rect.top);
  }

  panBy(dx, dy) {
    this.x += dx;
    this.y += dy;
    this.redraw();
  }

  /** Image coordinates (fractional) of a mouse position. */
  toImage(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: (clientX - rect.left - this.x) / this.zoom, y: (clientY - rect.top - this.y) / this.zoom };
  }

  /** Mouse (client) coordinates of an image position. */
  toClient(x, y) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + this.x + x * this.zoom, y: rect.top + this.y + y * this.zoom };
  }

  /** Schedule one repaint on the next animation frame. */
  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      const ratio = this.canvas.width / Math.max(1, this.canvas.getBoundingClientRect().width);
      const ctx = this.ctx;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
      if (!this.width) return;
      ctx.setTransform(ratio * this.zoom, 0, 0, ratio * this.zoom, ratio * this.x, ratio * this.y);
      ctx.imageSmoothingEnabled = this.zoom < 2; // zoomed in: see the pixels
      this.draw(ctx);
    });
  }
}
