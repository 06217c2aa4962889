// A grid of byte values (segmentation label ids, or mask bits) painted with a round brush on a <canvas>.
// The grid is the truth; the canvas only shows it (through `render`), so what is sent is exact: no
// anti-aliasing ever mixes two labels.
"use strict";

class Grid {
  // canvas: where it is shown and painted; render(rgba, grid): fills the canvas pixels from the grid.
  constructor(canvas, render) {
    this.canvas = canvas;
    this.render = render;
    this.w = 0;
    this.h = 0;
    this.data = new Uint8Array(0);
    this.value = 1;      // what the brush writes
    this.size = 4;       // brush diameter in grid pixels
    this.last = null;
    this.onchange = null;
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    for (const ev of ["pointerup", "pointercancel"]) canvas.addEventListener(ev, () => (this.last = null));
  }

  // Resize to w x h, keeping the old content (nearest neighbour) unless a `fill` value is given.
  resize(w, h, fill = null) {
    const old = this.data, ow = this.w, oh = this.h;
    const data = new Uint8Array(w * h).fill(fill ?? 0);
    if (ow && oh && fill === null) {
      for (let y = 0; y < h; y++) {
        const sy = Math.min(oh - 1, Math.floor((y * oh) / h));
        for (let x = 0; x < w; x++) data[y * w + x] = old[sy * ow + Math.min(ow - 1, Math.floor((x * ow) / w))];
      }
    }
    this.set(data, w, h);
  }

  set(data, w, h) {
    this.data = data;
    this.w = w;
    this.h = h;
    this.canvas.width = w;
    this.canvas.height = h;
    this.canvas.style.width = displayWidth(w, h) + "px";
    this.draw();
  }

  fill(value) {
    this.data.fill(value);
    this.draw();
  }

  draw() {
    if (!this.w) return;
    const ctx = this.canvas.getContext("2d");
    const img = ctx.createImageData(this.w, this.h);
    this.render(img.data, this);
    ctx.putImageData(img, 0, 0);
  }

  at(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * this.w) / r.width, ((e.clientY - r.top) * this.h) / r.height];
  }

  down(e) {
    if (!this.w) return;
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.at(e);
    this.stamp(...this.last);
    this.draw();
  }

  move(e) {
    if (!this.last) return;
    const [x, y] = this.at(e), [x0, y0] = this.last;
    const steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0) / Math.max(0.5, this.size / 3)));
    for (let k = 1; k <= steps; k++) this.stamp(x0 + ((x - x0) * k) / steps, y0 + ((y - y0) * k) / steps);
    this.last = [x, y];
    this.draw();
  }

  // A disc of diameter `size` around (x, y) in grid coordinates, and always the pixel under (x, y).
  stamp(x, y) {
    const r = this.size / 2, w = this.w, h = this.h;
    for (let py = Math.floor(y - r); py <= Math.ceil(y + r); py++) {
      if (py < 0 || py >= h) continue;
      for (let px = Math.floor(x - r); px <= Math.ceil(x + r); px++) {
        if (px < 0 || px >= w) continue;
        const dx = px + 0.5 - x, dy = py + 0.5 - y;
        if (dx * dx + dy * dy <= r * r) this.data[py * w + px] = this.value;
      }
    }
    const cx = Math.floor(x), cy = Math.floor(y);
    if (cx >= 0 && cx < w && cy >= 0 && cy < h) this.data[cy * w + cx] = this.value;
    if (this.onchange) this.onchange();
  }

  // The grid as a PNG whose gray value (R = G = B) is the byte: what the server reads as ids or a mask.
  toPNG(scale = 1) {
    const c = document.createElement("canvas");
    c.width = this.w;
    c.height = this.h;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(this.w, this.h);
    for (let i = 0; i < this.data.length; i++) {
      const v = Math.min(255, this.data[i] * scale);
      img.data.set([v, v, v, 255], 4 * i);
    }
    ctx.putImageData(img, 0, 0);
    return new Promise((resolve) => c.toBlob(resolve, "image/png"));
  }
}

// How wide (CSS px) to show a w x h image: small ones scaled up by a whole factor, large ones as they are.
function displayWidth(w, h, target = 384) {
  return w * Math.max(1, Math.floor(target / Math.max(w, h)));
}

// "#rrggbb" -> [r, g, b]
function hexColor(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
