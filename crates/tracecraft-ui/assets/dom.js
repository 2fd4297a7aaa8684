// DOM helpers. Every value from the store is inserted as text (text nodes, textContent,
// setAttribute of our own attribute names); nothing here ever assigns HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// Only links inside this app: a path starting with one '/'. Anything else (e.g. a
// URL with a script scheme that came from data) is dropped.
export function safeHref(href) {
  return typeof href === 'string' && href.startsWith('/') && !href.startsWith('//') ? href : null;
}

/** h('div', {class: 'x', onclick: f}, 'text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'href') { const s = safeHref(v); if (s) el.setAttribute('href', s); }
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (k === 'style') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** An SVG element; attribute values are numbers or our own strings. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

/** Replaces `el`'s children (null/false children are skipped, strings become text). */
export function fill(el, ...children) { el.replaceChildren(); append(el, children); return el; }

/** Appends to `el` (null/false children are skipped, strings become text). */
export function add(el, ...children) { append(el, children); return el; }

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  if (ms === 0) return '0';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  const hh = Math.floor(m / 60);
  return `${hh}h ${String(m - hh * 60).padStart(2, '0')}m`;
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return '–';
  if (usd === 0) return '$0';
  if (usd < 0.0001) return `$${usd.toFixed(6)}`;
  if (usd < 1) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

const nf = new Intl.NumberFormat();
export function fmtInt(n) {
  if (n === null || n === undefined) return '–';
  return nf.format(n);
}

export function fmtCompact(n) {
  if (n === null || n === undefined) return '–';
  if (Math.abs(n) < 10000) return nf.format(Math.round(n * 100) / 100);
  return new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }).format(n);
}

const pad = (n) => String(n).padStart(2, '0');
function zoneName(d) {
  const part = new Intl.DateTimeFormat(undefined, { timeZoneName: 'short' })
    .formatToParts(d).find((p) => p.type === 'timeZoneName');
  return part ? part.value : '';
}

/** Local time with its zone: `2026-12-07 03:14:07 CET`. */
export function fmtTime(iso, withZone = true) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const t = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withZone ? `${t} ${zoneName(d)}` : t;
}

export function fmtAgo(iso) {
  const d = new Date(iso).getTime();
  if (Number.isNaN(d)) return '';
  const s = Math.round((Date.now() - d) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** `datetime-local` input value <-> ISO UTC. */
export function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
export function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

export const STEP_TYPES = ['agent', 'llm', 'tool', 'retrieval', 'memory', 'guardrail', 'evaluation', 'workflow', 'error'];
export function typeLabel(t) {
  return ({ llm: 'LLM', retrieval: 'RETR', guardrail: 'GUARD', evaluation: 'EVAL', workflow: 'FLOW' })[t] || String(t).toUpperCase();
}
export function typeClass(t) {
  return STEP_TYPES.includes(t) ? `t-${t}` : 't-other';
}

/** A stored value shown in full: strings keep their line breaks, structures are pretty JSON. */
export function valueView(v) {
  if (v === null || v === undefined) return h('div', { class: 'muted' }, '–');
  if (typeof v === 'string') return h('pre', { class: 'text' }, v);
  if (typeof v !== 'object') return h('pre', { class: 'text' }, String(v));
  if (Object.keys(v).length === 0) return h('div', { class: 'muted' }, Array.isArray(v) ? '(empty list)' : '(none)');
  const entries = Array.isArray(v) ? null : Object.entries(v);
  if (entries && entries.length > 0 && entries.length <= 40) {
    return h('div', { class: 'kv' }, entries.map(([k, val]) => h('div', { class: 'kv-row' },
      h('div', { class: 'kv-key' }, k),
      typeof val === 'string' ? h('pre', { class: 'text' }, val)
        : h('pre', { class: 'json' }, JSON.stringify(val, null, 2)))));
  }
  return h('pre', { class: 'json' }, JSON.stringify(v, null, 2));
}

export function section(title, ...body) {
  return h('section', { class: 'card' }, h('h3', {}, title), body);
}

export function empty(text) { return h('div', { class: 'empty' }, text); }

export function errorBox(e) {
  return h('div', { class: 'banner danger' }, `Could not load: ${e && e.message ? e.message : e}`);
}
