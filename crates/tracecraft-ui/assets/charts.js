// The overview: totals, per-period charts (runs and errors, tokens, cost, p50/p95 latency)
// drawn as inline SVG, the top models and the top failing steps.
import { h, fill, add, s, clear, fmtDuration, fmtCost, fmtInt, fmtCompact, fmtTime, typeLabel, typeClass, errorBox, empty } from './dom.js';
import * as api from './api.js';

const W = 560; const H = 180; const PAD_L = 48; const PAD_B = 22; const PAD_T = 10; const PAD_R = 10;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function bucketLabel(iso, bucketS) {
  const d = new Date(iso);
  const t = fmtTime(iso, false);
  return bucketS >= 86400 ? t.slice(0, 10) : (bucketS >= 3600 ? t.slice(5, 13) + 'h' : t.slice(11, 16)) || String(d);
}

/** A chart: `series` = [{key, label, cls, kind: 'bar'|'line'}], values from buckets[key]. */
function chart(title, buckets, bucketS, series, fmt) {
  const n = buckets.length;
  const max = niceMax(Math.max(0, ...buckets.flatMap((b) => series.map((se) => b[se.key] || 0))));
  const iw = W - PAD_L - PAD_R; const ih = H - PAD_T - PAD_B;
  const x = (i) => PAD_L + (i + 0.5) * (iw / Math.max(n, 1));
  const y = (v) => PAD_T + ih - (v / max) * ih;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img' }, s('title', {}, title));
  for (const f of [0, 0.5, 1]) {
    svg.append(s('line', { x1: PAD_L, x2: W - PAD_R, y1: y(max * f), y2: y(max * f), class: 'gridline' }),
      s('text', { x: PAD_L - 6, y: y(max * f) + 4, class: 'axis-label', 'text-anchor': 'end' }, fmt(max * f)));
  }
  const bw = Math.max(2, (iw / Math.max(n, 1)) * 0.7);
  const bars = series.filter((se) => se.kind === 'bar');
  buckets.forEach((b, i) => {
    bars.forEach((se, j) => {
      const v = b[se.key] || 0;
      const w = bw / bars.length;
      svg.append(s('rect', { x: x(i) - bw / 2 + j * w, y: y(v), width: Math.max(1, w - 1), height: Math.max(0, PAD_T + ih - y(v)), class: `bar ${se.cls}`, rx: 1.5 },
        s('title', {}, `${bucketLabel(b.t, bucketS)} · ${se.label}: ${fmt(v)}`)));
    });
  });
  for (const se of series.filter((q) => q.kind === 'line')) {
    const pts = buckets.map((b, i) => [i, b[se.key]]).filter(([, v]) => v !== null && v !== undefined);
    if (pts.length) {
      svg.append(s('polyline', { points: pts.map(([i, v]) => `${x(i)},${y(v)}`).join(' '), class: `line ${se.cls}` }));
      for (const [i, v] of pts) svg.append(s('circle', { cx: x(i), cy: y(v), r: 2.5, class: `pt ${se.cls}` }, s('title', {}, `${bucketLabel(buckets[i].t, bucketS)} · ${se.label}: ${fmt(v)}`)));
    }
  }
  const step = Math.max(1, Math.ceil(n / 6));
  buckets.forEach((b, i) => {
    if (i % step === 0) svg.append(s('text', { x: x(i), y: H - 6, class: 'axis-label', 'text-anchor': 'middle' }, bucketLabel(b.t, bucketS)));
  });
  return h('section', { class: 'card chart-card' },
    h('div', { class: 'chart-head' }, h('h3', {}, title),
      h('div', { class: 'legend' }, series.map((se) => h('span', { class: 'lg' }, h('span', { class: `sw ${se.cls}` }), se.label)))),
    svg);
}

function kpi(label, value, sub) {
  return h('div', { class: 'kpi' }, h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value), sub ? h('div', { class: 'kpi-sub' }, sub) : null);
}

function barTable(title, rows, cols) {
  if (!rows.length) return section2(title, empty('Nothing yet.'));
  const max = Math.max(...rows.map((r) => r[cols[0].key]));
  return section2(title, h('table', { class: 'toplist' },
    h('tbody', {}, rows.map((r) => h('tr', {},
      h('td', { class: 'tl-name' }, cols[0].label(r)),
      h('td', { class: 'tl-bar' }, h('div', { class: `hbar ${cols[0].cls || ''}`, style: { width: `${(r[cols[0].key] / max) * 100}%` } })),
      cols.map((c) => h('td', { class: 'num' }, c.fmt(r[c.key]))))))));
}

function section2(title, body) {
  return h('section', { class: 'card' }, h('h3', {}, title), body);
}

const RANGES = [['1h', 'Last hour', 3600e3], ['24h', '24 hours', 86400e3], ['7d', '7 days', 7 * 86400e3], ['30d', '30 days', 30 * 86400e3], ['all', 'All', 0]];

/** Quick time ranges: each a link that sets `from` (and keeps the other filters). */
function rangePicker(params) {
  const current = params.get('range') || 'all';
  return h('div', { class: 'ranges', id: 'ranges' }, RANGES.map(([key, label, ms]) => {
    const p = new URLSearchParams(params);
    p.delete('from');
    p.delete('range');
    if (ms) { p.set('from', new Date(Date.now() - ms).toISOString()); p.set('range', key); }
    const qs = p.toString();
    return h('a', { class: `range${key === current ? ' active' : ''}`, href: `/overview${qs ? `?${qs}` : ''}` }, label);
  }));
}

export async function renderOverview(main, params) {
  add(main, h('div', { class: 'page-head' }, h('h1', {}, 'Overview')), h('div', { class: 'loading' }, 'Loading…'));
  let d;
  const query = Object.fromEntries(params);
  delete query.range;
  try { d = await api.get('/api/overview', query); } catch (e) { main.lastChild.replaceWith(errorBox(e)); return null; }
  const t = d.totals;
  const note = `All ${fmtInt(d.sampled)} runs.`;
  fill(main, 
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), h('span', { class: 'muted' }, note), h('span', { class: 'spacer' }), rangePicker(params)),
    h('div', { class: 'kpis' },
      kpi('Runs', fmtInt(t.runs)),
      kpi('Errors', fmtInt(t.errors), t.runs ? `${((t.errors / t.runs) * 100).toFixed(1)}% of runs` : null),
      kpi('Tokens', fmtCompact(t.tokens)),
      kpi('Cost', fmtCost(t.cost)),
      kpi('Latency p50', fmtDuration(t.p50)),
      kpi('Latency p95', fmtDuration(t.p95))),
    d.buckets.length ? h('div', { class: 'charts', id: 'charts' },
      chart('Runs and errors', d.buckets, d.bucket_s, [{ key: 'runs', label: 'runs', cls: 'c-runs', kind: 'bar' }, { key: 'errors', label: 'errors', cls: 'c-errors', kind: 'bar' }], fmtCompact),
      chart('Latency', d.buckets, d.bucket_s, [{ key: 'p50', label: 'p50', cls: 'c-p50', kind: 'line' }, { key: 'p95', label: 'p95', cls: 'c-p95', kind: 'line' }], fmtDuration),
      chart('Tokens', d.buckets, d.bucket_s, [{ key: 'tokens', label: 'tokens', cls: 'c-tokens', kind: 'bar' }], fmtCompact),
      chart('Cost', d.buckets, d.bucket_s, [{ key: 'cost', label: 'cost', cls: 'c-cost', kind: 'bar' }], fmtCost)) : empty('No runs to chart yet.'),
    h('div', { class: 'two-col' },
      barTable('Top models', d.models, [
        { key: 'calls', label: (r) => h('span', { class: 'mono' }, r.model), fmt: (v) => `${fmtInt(v)} call${v === 1 ? '' : 's'}`, cls: 't-llm' },
        { key: 'tokens', fmt: (v) => `${fmtCompact(v)} tok` },
        { key: 'cost', fmt: fmtCost },
      ]),
      barTable('Top failing steps', d.failing, [
        { key: 'errors', label: (r) => h('span', {}, h('span', { class: `badge ${typeClass(r.type)}` }, typeLabel(r.type)), ' ', r.name), fmt: (v) => `${fmtInt(v)} error${v === 1 ? '' : 's'}`, cls: 't-error' },
      ])));
  return null;
}
