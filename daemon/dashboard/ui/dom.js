// DOM and formatting helpers. Every piece of API data reaches the page as a
// text node (never innerHTML), so pod or path names cannot inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h("td", {class: "x"}, "text", child...) builds an HTML element.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s("path", {d: ...}) builds an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

const DASH = "–";

export function num(v) {
  if (v === undefined || v === null || !isFinite(v)) return DASH;
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 10 ? 2 : 1);
}

export function bytes(v) {
  if (v === undefined || v === null || !isFinite(v)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + " " + units[i];
}

export function pct(v) {
  if (v === undefined || v === null || !isFinite(v)) return DASH;
  const p = v * 100;
  return (p === 100 || p === 0 ? p.toFixed(0) : p.toFixed(1)) + "%";
}

export function ms(v) {
  if (v === undefined || v === null || !isFinite(v)) return DASH;
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " ms";
}

// A success-rate cell: red below the API's error threshold (0.95).
export function rateCell(rate, requests) {
  if (!requests) return h("td", {class: "muted"}, DASH);
  return h("td", {class: rate < 0.95 ? "bad" : "ok"}, pct(rate));
}

// parseDuration reads a Go duration string ("1m0s", "30s", "1h") into ms.
export function parseDuration(str) {
  const units = {ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6};
  let total = 0, matched = false;
  for (const m of String(str).matchAll(/([0-9.]+)(ns|us|µs|ms|s|m|h)/g)) {
    total += parseFloat(m[1]) * units[m[2]];
    matched = true;
  }
  return matched ? total : NaN;
}
