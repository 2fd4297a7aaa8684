// The run view: header with totals, a waterfall of every step on one time axis (tree on the
// left, collapsible; virtualized, so 20,000 steps scroll smoothly), and the detail of the
// selected step (full inputs and outputs, chat view of LLM messages, attributes, error).
import { h, fill, add, clear, fmtDuration, fmtCost, fmtInt, fmtTime, fmtAgo, typeLabel, typeClass, valueView, section, errorBox, empty } from './dom.js';
import * as api from './api.js';
import { chatView, extractChat } from './chat.js';

const ROW = 28;
const OVERSCAN = 12;

function stat(label, value, cls) {
  return h('div', { class: `stat${cls ? ` ${cls}` : ''}` }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value));
}

/** Round tick positions for the time axis: 1, 2 or 5 times a power of ten, 4-8 ticks. */
function ticks(span) {
  const raw = span / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((v) => span / v <= 6) || 10 * p;
  const out = [];
  for (let t = 0; t <= span * 1.0001; t += step) out.push({ f: t / span, label: fmtDuration(t) });
  return out;
}

function runHeader(data, meta, ctx) {
  const r = data.run;
  const steps = data.steps;
  const errors = steps.filter((s) => s.e).length;
  const hasError = r.error || r.error_count > 0 || errors > 0;
  const erase = meta && meta.allow_erase ? h('button', { class: 'danger-btn', type: 'button', id: 'erase', onclick: async () => {
    // The confirmation names the run; the id travels in a header a cross-site page cannot set.
    if (!window.confirm(`Erase the run "${r.name}" (${r.id}) and all of its steps from the store? This cannot be undone.`)) return;
    try { await api.erase(r.id); ctx.navigate('/', { replace: true }); } catch (e) { window.alert(`Erasure failed: ${e.message}`); }
  } }, 'Erase run…') : null;
  const link = (k, v) => v ? h('a', { class: 'mono', href: `/?${new URLSearchParams({ [k]: v })}` }, v) : h('span', { class: 'muted' }, '–');
  return h('header', { class: 'run-head' },
    h('div', { class: 'crumbs' }, h('a', { href: '/' }, '← Traces')),
    h('div', { class: 'title-row' },
      h('span', { class: `status ${hasError ? 'err' : 'ok'}` }, hasError ? 'Error' : 'OK'),
      h('h1', { id: 'run-name' }, r.name || '(unnamed)'),
      h('span', { class: 'mono dim id' }, r.id),
      h('span', { class: 'spacer' }),
      erase),
    r.description ? h('p', { class: 'desc' }, r.description) : null,
    h('div', { class: 'stats' },
      stat('Started', fmtTime(r.start_time)),
      stat('Duration', fmtDuration(r.duration_ms)),
      stat('Steps', fmtInt(steps.length)),
      stat('Tokens', fmtInt(r.total_tokens)),
      stat('Cost', fmtCost(r.total_cost_usd)),
      stat('Errors', fmtInt(r.error_count), r.error_count ? 'err' : ''),
      stat('User', link('user', r.user_id)),
      stat('Session', link('session', r.session_id)),
      stat('Environment', r.environment || '–')),
    (r.tags && r.tags.length) ? h('div', { class: 'tags' }, r.tags.map((t) => h('a', { class: 'tag', href: `/?${new URLSearchParams({ tag: t })}` }, t))) : null);
}

function banners(data) {
  const out = [];
  const red = data.redaction;
  if (red.disabled) {
    out.push(h('div', { class: 'banner danger', id: 'redaction-disabled' },
      h('strong', {}, 'Redaction was disabled for this run. '),
      'Its inputs, outputs and attributes were stored as captured and may contain secrets or personal data.'));
  }
  const cut = [];
  if (red.steps_dropped) cut.push(`${fmtInt(red.steps_dropped)} step${red.steps_dropped === 1 ? ' was' : 's were'} not recorded (depth limit)`);
  if (red.values_truncated) cut.push(`${fmtInt(red.values_truncated)} value${red.values_truncated === 1 ? ' was' : 's were'} cut at the depth limit`);
  if (cut.length) out.push(h('div', { class: 'banner warn', id: 'limits' }, `Incomplete: ${cut.join('; ')}.`));
  if (data.run.error) {
    out.push(h('div', { class: 'banner warn' }, h('strong', {}, `${data.run.error_type || 'Error'}: `), data.run.error));
  }
  return out;
}

function redactionCard(red) {
  if (red.disabled) return null;
  if (red.count === null || red.count === undefined) {
    return section('Redaction', h('div', { class: 'muted' }, 'No redaction summary recorded for this run.'));
  }
  return section('Redaction',
    h('div', { class: 'red-sum' }, red.count === 0 ? 'No values needed redacting.' : `${fmtInt(red.count)} value${red.count === 1 ? '' : 's'} redacted before storage`),
    red.rules.length ? h('div', { class: 'rules' }, red.rules.map((x) => h('span', { class: 'rule' }, x.rule, h('b', {}, `×${fmtInt(x.count)}`)))) : null);
}

function runDetail(data) {
  const r = data.run;
  const attrs = Object.entries(r.attributes || {}).filter(([k]) => !k.startsWith('tracecraft.redaction') && k !== 'tracecraft.steps_dropped' && k !== 'tracecraft.values_truncated');
  return h('div', { class: 'detail-inner' },
    h('div', { class: 'detail-title' }, h('span', { class: 'badge t-run' }, 'RUN'), h('h2', {}, r.name || '(unnamed)')),
    h('p', { class: 'muted hint' }, 'Select a step in the waterfall to see its inputs, outputs and messages.'),
    section('Input', valueView(r.input)),
    section('Output', valueView(r.output)),
    redactionCard(data.redaction),
    attrs.length ? section('Attributes', valueView(Object.fromEntries(attrs))) : null,
    section('Details', valueView(Object.fromEntries(Object.entries({
      agent: r.agent_name, agent_id: r.agent_id, agent_description: r.agent_description,
      cloud_provider: r.cloud_provider, cloud_trace_id: r.cloud_trace_id, end_time: r.end_time && fmtTime(r.end_time), sample_reason: r.sample_reason,
    }).filter(([, v]) => v !== null && v !== undefined)))));
}

function metric(label, value, note) {
  return h('div', { class: 'metric' }, h('span', { class: 'm-label' }, label), h('span', { class: 'm-value' }, value, note ? h('span', { class: 'est', title: 'estimated' }, note) : null));
}

async function stepDetail(pane, runId, outlineRow) {
  fill(pane, h('div', { class: 'loading' }, 'Loading step…'));
  let st;
  try { st = await api.get(`/api/runs/${runId}/steps/${outlineRow.id}`); } catch (e) { fill(pane, errorBox(e)); return; }
  const tokens = st.input_tokens !== null || st.output_tokens !== null
    ? `${fmtInt(st.input_tokens || 0)} in · ${fmtInt(st.output_tokens || 0)} out` : '–';
  const chat = extractChat(st);
  const children = [
    h('div', { class: 'detail-title' },
      h('span', { class: `badge ${typeClass(st.type)}` }, typeLabel(st.type)),
      h('h2', { id: 'step-name' }, st.name),
      st.error !== null || st.error_type !== null ? h('span', { class: 'status err' }, 'Error') : null),
    h('div', { class: 'metrics' },
      metric('Latency', fmtDuration(st.duration_ms)),
      metric('Starts at', `+${fmtDuration(st.offset_ms)}`),
      st.model_name ? metric('Model', `${st.model_name}${st.model_provider ? ` (${st.model_provider})` : ''}`) : null,
      tokens !== '–' ? metric('Tokens', tokens, st.tokens_estimated ? 'est.' : null) : null,
      st.cost_usd !== null ? metric('Cost', fmtCost(st.cost_usd), st.cost_estimated ? 'est.' : null) : null,
      st.is_streaming ? metric('Streaming', `${fmtInt(st.streaming_chunks.length)} chunks`) : null),
  ];
  if (st.error !== null || st.error_type !== null) {
    const stack = st.attributes && (st.attributes['exception.stacktrace'] || st.attributes.stack || st.attributes.traceback);
    children.push(h('section', { class: 'card error-card' }, h('h3', {}, st.error_type || 'Error'),
      h('pre', { class: 'text' }, st.error || ''), stack ? h('pre', { class: 'text stack' }, String(stack)) : null));
  }
  if (chat) children.push(section('Messages', chatView(chat)));
  children.push(section(chat ? 'Inputs (raw)' : 'Inputs', valueView(st.inputs)));
  children.push(section(chat ? 'Outputs (raw)' : 'Outputs', valueView(st.outputs)));
  if (st.streaming_chunks && st.streaming_chunks.length) {
    children.push(section('Streaming chunks', h('pre', { class: 'text' }, st.streaming_chunks.join(''))));
  }
  if (st.attributes && Object.keys(st.attributes).length) children.push(section('Attributes', valueView(st.attributes)));
  children.push(h('div', { class: 'ids mono dim' }, `step ${st.id}`, st.parent_id ? ` · parent ${st.parent_id}` : ''));
  fill(pane, h('div', { class: 'detail-inner', id: 'step-detail' }, children));
  pane.scrollTop = 0;
}

/** The waterfall: tree labels and bars on one time axis, only visible rows in the DOM. */
function waterfall(data, onSelect) {
  const steps = data.steps;
  const span = Math.max(data.span_ms || 0, 1);
  const collapsed = new Set();
  let visible = steps.map((_, i) => i);
  let selected = -1;

  const spacer = h('div', { class: 'wf-spacer' });
  const scroller = h('div', { class: 'wf-scroll', id: 'waterfall', tabindex: '0' }, spacer);
  const axisTicks = ticks(span);
  const axis = h('div', { class: 'wf-axis' }, axisTicks.map((t) =>
    h('span', { class: `tick${t.f > 0.97 ? ' last' : ''}`, style: { left: `${t.f * 100}%` } }, t.label)));
  // One layer of grid lines behind every row, at the ticks.
  const grid = h('div', { class: 'wf-grid' }, axisTicks.map((t) => h('div', { class: 'gl', style: { left: `${t.f * 100}%` } })));
  const count = h('span', { class: 'muted' }, `${fmtInt(steps.length)} step${steps.length === 1 ? '' : 's'}`);
  const toolbar = h('div', { class: 'wf-tools' },
    h('button', { type: 'button', class: 'ghost small', onclick: () => { collapsed.clear(); recompute(); } }, 'Expand all'),
    h('button', { type: 'button', class: 'ghost small', onclick: () => { steps.forEach((s) => { if (s.k && s.d >= 1) collapsed.add(s.i); }); recompute(); } }, 'Collapse'));
  const legendTypes = [...new Set(steps.map((s) => s.t))];
  const legend = h('div', { class: 'legend' }, legendTypes.map((t) => h('span', { class: 'lg' }, h('span', { class: `sw ${typeClass(t)}` }), typeLabel(t))));
  const head = h('div', { class: 'wf-head' }, h('div', { class: 'wf-tree-head' }, count, toolbar), h('div', { class: 'wf-axis-wrap' }, axis));

  function recompute() {
    visible = [];
    let skipDepth = -1;
    for (const s of steps) {
      if (skipDepth >= 0 && s.d > skipDepth) continue;
      skipDepth = -1;
      visible.push(s.i);
      if (collapsed.has(s.i)) skipDepth = s.d;
    }
    spacer.style.height = `${visible.length * ROW}px`;
    draw(true);
  }

  let lastRange = '';
  function draw(force) {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(visible.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const key = `${first}:${last}:${selected}`;
    if (!force && key === lastRange) return;
    lastRange = key;
    const rows = [];
    for (let v = first; v < last; v++) rows.push(rowEl(steps[visible[v]], v));
    spacer.replaceChildren(grid, ...rows);
  }

  function rowEl(s, v) {
    const left = (Math.max(0, s.s) / span) * 100;
    const width = s.ms === null ? 0 : (s.ms / span) * 100;
    const toggle = s.k ? h('button', { type: 'button', class: 'tw', title: collapsed.has(s.i) ? 'Expand' : 'Collapse',
      onclick: (ev) => { ev.stopPropagation(); if (collapsed.has(s.i)) collapsed.delete(s.i); else collapsed.add(s.i); recompute(); } },
    collapsed.has(s.i) ? '▸' : '▾') : h('span', { class: 'tw-none' });
    const label = h('div', { class: 'wf-label', style: { paddingLeft: `${6 + Math.min(s.d, 24) * 14}px` } },
      toggle,
      h('span', { class: `badge ${typeClass(s.t)}` }, typeLabel(s.t)),
      h('span', { class: 'wf-name', title: s.n }, s.n),
      s.e ? h('span', { class: 'err-mark', title: 'this step failed' }, '!') : null,
      collapsed.has(s.i) ? h('span', { class: 'muted small' }, ` +${s.k}`) : null);
    const bar = h('div', { class: `wf-bar ${typeClass(s.t)}${s.e ? ' failed' : ''}${s.ms === null ? ' open' : ''}`,
      style: { left: `${left}%`, width: `max(2px, ${width}%)` }, title: `${s.n}: ${fmtDuration(s.ms)} at +${fmtDuration(s.s)}` });
    // The duration sits after the bar, inside a long bar that reaches the right edge, or
    // before a short one there.
    const durPos = left + width <= 80 ? { cls: '', style: { left: `calc(${left + width}% + 6px)` } }
      : width >= 18 ? { cls: ' inside', style: { right: `calc(${100 - left - width}% + 6px)`, maxWidth: `calc(${width}% - 12px)` } }
        : { cls: '', style: { right: `calc(${100 - left}% + 6px)` } };
    const dur = h('span', { class: `wf-dur${durPos.cls}`, style: durPos.style },
      fmtDuration(s.ms), s.m ? h('span', { class: 'wf-model' }, ` · ${s.m}`) : null,
      (s.ti || s.to) ? h('span', { class: 'wf-model' }, ` · ${fmtInt((s.ti || 0) + (s.to || 0))} tok${s.est ? ' (est.)' : ''}`) : null);
    const track = h('div', { class: 'wf-track' }, bar, dur);
    return h('div', { class: `wf-row${s.i === selected ? ' selected' : ''}${s.e ? ' has-error' : ''}`, style: { top: `${v * ROW}px` },
      dataset: { i: s.i, type: s.t, start: s.s, ms: s.ms === null ? '' : s.ms }, onclick: () => select(s.i, true) }, label, track);
  }

  function select(i, fromClick) {
    selected = i;
    draw(true);
    if (i >= 0) onSelect(steps[i], fromClick);
  }

  function reveal(i) {
    // Expand collapsed ancestors, then scroll the row into view.
    let p = steps[i].p;
    while (p >= 0) { collapsed.delete(p); p = steps[p].p; }
    recompute();
    const v = visible.indexOf(i);
    if (v >= 0 && (v * ROW < scroller.scrollTop || v * ROW > scroller.scrollTop + scroller.clientHeight - ROW)) {
      scroller.scrollTop = Math.max(0, v * ROW - scroller.clientHeight / 3);
    }
  }

  scroller.addEventListener('scroll', () => draw(false), { passive: true });
  scroller.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
    ev.preventDefault();
    const v = Math.max(0, visible.indexOf(selected));
    const nv = Math.min(visible.length - 1, Math.max(0, v + (ev.key === 'ArrowDown' ? 1 : -1)));
    select(visible[nv], true);
    reveal(visible[nv]);
  });

  const el = h('div', { class: 'trace-pane' }, head, scroller, legend);
  return {
    el,
    start() { recompute(); },
    select(i) { reveal(i); select(i, false); },
  };
}

export async function renderRun(main, params, ctx, id) {
  add(main, h('div', { class: 'loading' }, 'Loading run…'));
  let data; let meta = null;
  try {
    [data, meta] = await Promise.all([api.get(`/api/runs/${id}`), api.meta().catch(() => null)]);
  } catch (e) {
    fill(main, h('div', { class: 'crumbs' }, h('a', { href: '/' }, '← Traces')), errorBox(e));
    return null;
  }
  if (!ctx.current()) return null;
  document.title = `${data.run.name} · TraceCraft`;
  const detail = h('aside', { class: 'detail-pane', id: 'detail' });
  const showRun = () => fill(detail, runDetail(data));
  const wf = waterfall(data, (step, fromClick) => {
    if (fromClick) ctx.setQuery({ step: step.id });
    stepDetail(detail, data.run.id, step);
  });
  fill(main, h('div', { class: 'run-page' },
    runHeader(data, meta, ctx), banners(data),
    h('div', { class: 'split' },
      data.steps.length ? wf.el : h('div', { class: 'trace-pane' }, empty('This run has no steps.')),
      detail)));
  wf.start();
  const want = params.get('step');
  const idx = want ? data.steps.findIndex((s) => s.id === want) : -1;
  if (idx >= 0) wf.select(idx); else showRun();
  performance.mark('tc:run-rendered');
  return () => { document.title = 'TraceCraft'; };
}
