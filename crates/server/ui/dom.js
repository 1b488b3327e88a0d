// Building the page: elements from data with textContent only (never markup from data), and
// the formats every page shares. Message text and FHIR output are data: they cannot run.

/** An element: h('a', {href: '#/x', class: 'y', onclick: f}, 'text', child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table with a header row; `rows` are arrays of cells (node, text, or {cell, class}). */
export function table(headers, rows, attrs = {}) {
  const head = h('thead', {}, h('tr', {}, headers.map((x) => {
    const [text, cls] = Array.isArray(x) ? x : [x, undefined];
    return h('th', { scope: 'col', class: cls }, text);
  })));
  const body = h('tbody', {}, rows);
  return h('div', { class: 'scroll' }, h('table', attrs, head, body));
}

/** A row of cells; a cell is text, a node, or [content, class]. */
export function row(cells, attrs = {}) {
  return h('tr', attrs, cells.map((c) => Array.isArray(c) ? h('td', { class: c[1] }, c[0]) : h('td', {}, c)));
}

/** Definition list of [term, value] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function num(n, digits = 0) {
  if (n === undefined || n === null || Number.isNaN(n)) return '—';
  return Number(n).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function ms(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '—';
  if (n >= 10000) return `${num(n / 1000, 1)} s`;
  return `${num(n, n < 10 ? 1 : 0)} ms`;
}

/** A duration in ms as "4 s", "3 min", "2 h". */
export function age(msAgo) {
  if (msAgo === undefined || msAgo === null) return '—';
  const sec = Math.max(0, Math.round(msAgo / 1000));
  if (sec < 90) return `${sec} s`;
  if (sec < 5400) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${Math.round(sec / 3600)} h`;
  return `${Math.round(sec / 86400)} d`;
}

/** A time (RFC 3339 text or Unix ms) in the browser's zone, to the second. */
export function when(t) {
  if (t === undefined || t === null || t === '') return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleString('en-GB', { hour12: false });
}

/** Shows a short note in the live region at the bottom of the page. */
let toastTimer;
export function toast(text, ms = 6000) {
  const el = document.getElementById('toast');
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ''; }, ms);
}

/** A generic view of any JSON value: objects as definition lists, arrays of objects as tables. */
export function tree(value, depth = 0) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, '—');
  if (Array.isArray(value)) {
    if (value.length === 0) return h('span', { class: 'muted' }, 'none');
    const objects = value.every((v) => v && typeof v === 'object' && !Array.isArray(v));
    if (objects && depth < 4) {
      const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
      const flat = keys.filter((k) => value.every((v) => v[k] === undefined || v[k] === null || typeof v[k] !== 'object'));
      const nested = keys.filter((k) => !flat.includes(k));
      return table([...flat, ...nested], value.map((v) => row([
        ...flat.map((k) => (typeof v[k] === 'number' ? [num(v[k], 3), 'num'] : scalar(v[k]))),
        ...nested.map((k) => tree(v[k], depth + 1)),
      ])));
    }
    return h('span', {}, value.map((v, i) => [i ? ', ' : '', typeof v === 'object' ? tree(v, depth + 1) : scalar(v)]));
  }
  if (typeof value === 'object') {
    return facts(Object.entries(value).map(([k, v]) => [k, typeof v === 'object' && v !== null ? tree(v, depth + 1) : scalar(v)]));
  }
  return scalar(value);
}

function scalar(v) {
  if (v === undefined || v === null) return '—';
  if (typeof v === 'number') return num(v, 3);
  return String(v);
}
