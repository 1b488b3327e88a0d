// Time-series line charts drawn as SVG: one chart, several named series sharing the time axis.
// Redrawn whole on each update (a few hundred points: cheaper than diffing).

import { h, s, fill, num } from './dom.js';

const W = 600;
const H = 200;
const PAD = { left: 48, right: 10, top: 10, bottom: 24 };

export class Chart {
  /** `title` names the chart for screen readers and as its heading; `unit` labels values. */
  constructor(title, unit, digits = 1) {
    this.title = title;
    this.unit = unit;
    this.digits = digits;
    this.svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
    this.legend = h('div', { class: 'legend' });
    this.el = h('figure', { class: 'panel chart' },
      h('figcaption', {}, h('strong', {}, title), ' ', h('span', { class: 'muted' }, unit)),
      this.svg, this.legend);
  }

  /** `series`: [{name, points: [[unixMs, value|null], ...]}], oldest first. */
  update(series) {
    const all = series.flatMap((x) => x.points).filter((p) => p[1] !== null && p[1] !== undefined);
    const t1 = all.length ? Math.max(...all.map((p) => p[0])) : Date.now();
    const t0 = all.length ? Math.min(...all.map((p) => p[0])) : t1 - 60000;
    const span = Math.max(t1 - t0, 1000);
    const top = niceMax(all.length ? Math.max(...all.map((p) => p[1])) : 0);
    const x = (t) => PAD.left + ((t - t0) / span) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
    const parts = [];
    for (let i = 0; i <= 4; i += 1) {
      const v = (top * i) / 4;
      parts.push(s('line', { class: 'grid-line', x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
      parts.push(s('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(Number(v.toFixed(2)))));
    }
    parts.push(s('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
    parts.push(s('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
    for (const t of [t0, t0 + span / 2, t1]) {
      const label = new Date(t).toLocaleTimeString('en-GB', { hour12: false });
      parts.push(s('text', { x: x(t), y: H - 6, 'text-anchor': t === t0 ? 'start' : t === t1 ? 'end' : 'middle' }, label));
    }
    series.forEach((one, i) => {
      let d = '';
      let pen = false;
      for (const [t, v] of one.points) {
        if (v === null || v === undefined) { pen = false; continue; }
        d += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (d) parts.push(s('path', { class: `line s${i % 8}`, d }));
    });
    fill(this.svg, s('title', {}, this.title), parts);
    fill(this.legend, series.map((one, i) => {
      const last = [...one.points].reverse().find((p) => p[1] !== null && p[1] !== undefined);
      return h('span', {}, h('span', { class: `swatch s${i % 8}` }), `${one.name}: ${last ? num(last[1], this.digits) : '—'}`);
    }));
  }
}

/** A round number at or above `v` for the top of the axis. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
