// The runs list: filters (all in the URL), sortable columns, paging, live refresh.
import { h, fill, add, clear, fmtDuration, fmtCost, fmtInt, fmtTime, fmtAgo, toLocalInput, fromLocalInput, empty, errorBox } from './dom.js';
import * as api from './api.js';

const FILTERS = ['q', 'name', 'error', 'user', 'session', 'tag', 'model', 'from', 'to', 'min_ms', 'min_cost'];
const PAGE = 50;
const POLL_MS = 3000;

function paramsObject(params) {
  const o = {};
  for (const [k, v] of params) if (v !== '') o[k] = v;
  return o;
}

function urlWith(params, changes) {
  const p = new URLSearchParams(params);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') p.delete(k); else p.set(k, v);
  }
  const qs = p.toString();
  return `/${qs ? `?${qs}` : ''}`;
}

function filterBar(params, ctx) {
  const field = (name, label, attrs = {}) => h('label', { class: 'f' }, h('span', {}, label),
    h('input', { name, value: params.get(name) || '', autocomplete: 'off', spellcheck: 'false', ...attrs }));
  const errSel = h('select', { name: 'error' },
    h('option', { value: '' }, 'any'), h('option', { value: '1' }, 'with errors'), h('option', { value: '0' }, 'without errors'));
  errSel.value = params.get('error') || '';
  const from = h('input', { name: 'from', type: 'datetime-local', value: toLocalInput(params.get('from')) });
  const to = h('input', { name: 'to', type: 'datetime-local', value: toLocalInput(params.get('to')) });
  const form = h('form', { class: 'filters', id: 'filters' },
    h('div', { class: 'search' },
      h('input', { name: 'q', id: 'f-q', type: 'search', placeholder: 'Search names, inputs, outputs, attributes…', value: params.get('q') || '', autocomplete: 'off', spellcheck: 'false' }),
      h('button', { type: 'submit', class: 'primary', id: 'f-apply' }, 'Apply'),
      h('button', { type: 'button', class: 'ghost', id: 'f-reset', onclick: () => ctx.navigate('/') }, 'Reset')),
    h('div', { class: 'grid' },
      field('name', 'Name contains', { id: 'f-name' }),
      h('label', { class: 'f' }, h('span', {}, 'Status'), errSel),
      field('model', 'Model', { id: 'f-model' }),
      field('tag', 'Tag', { id: 'f-tag' }),
      field('user', 'User', { id: 'f-user' }),
      field('session', 'Session', { id: 'f-session' }),
      h('label', { class: 'f wide' }, h('span', {}, 'From'), from),
      h('label', { class: 'f wide' }, h('span', {}, 'To'), to),
      field('min_ms', 'Min duration (ms)', { type: 'number', min: '0', step: 'any', id: 'f-min-ms' }),
      field('min_cost', 'Min cost ($)', { type: 'number', min: '0', step: 'any', id: 'f-min-cost' })));
  const submit = (ev) => {
    if (ev) ev.preventDefault();
    const data = new FormData(form);
    const changes = { offset: null };
    for (const k of FILTERS) {
      let v = (data.get(k) || '').toString().trim();
      if (k === 'from' || k === 'to') v = fromLocalInput(v);
      changes[k] = v;
    }
    ctx.navigate(urlWith(params, changes));
  };
  form.addEventListener('submit', submit);
  errSel.addEventListener('change', submit);
  return form;
}

function activeChips(params, ctx) {
  const chips = [];
  for (const k of FILTERS) {
    const v = params.get(k);
    if (!v) continue;
    let shown = v;
    if (k === 'error') shown = v === '1' ? 'with errors' : 'without errors';
    if (k === 'from' || k === 'to') shown = fmtTime(v);
    chips.push(h('button', { class: 'chip', type: 'button', title: 'Remove this filter',
      onclick: () => ctx.navigate(urlWith(params, { [k]: null, offset: null })) }, `${k}: ${shown}`, h('span', { class: 'x' }, '×')));
  }
  return chips.length ? h('div', { class: 'chips' }, chips) : null;
}

const COLS = [
  ['name', 'Name', 'name'], ['start', 'Start', 'start'], ['duration', 'Duration', 'duration'],
  ['steps', 'Steps'], ['tokens', 'Tokens'], ['cost', 'Cost', 'cost'], ['errors', 'Errors'],
  ['user', 'User'], ['session', 'Session'], ['tags', 'Tags'],
];

function header(params, ctx) {
  const sort = params.get('sort') || 'start';
  const dir = params.get('dir') || 'desc';
  return h('thead', {}, h('tr', {}, COLS.map(([key, label, sortKey]) => {
    if (!sortKey) return h('th', { class: `c-${key}` }, label);
    const active = sort === sortKey;
    const next = active && dir === 'desc' ? 'asc' : 'desc';
    return h('th', { class: `c-${key} sortable${active ? ' sorted' : ''}` },
      h('a', { href: urlWith(params, { sort: sortKey, dir: next, offset: null }) }, label,
        h('span', { class: 'arrow' }, active ? (dir === 'desc' ? ' ↓' : ' ↑') : '')));
  })));
}

function row(r, params, ctx, fresh) {
  const link = `/runs/${r.id}`;
  const open = (ev) => { if (!ev.target.closest('a')) ctx.navigate(link); };
  const filterLink = (k, v, text) => v ? h('a', { class: 'mono dim', href: urlWith(params, { [k]: v, offset: null }), title: v }, text || v) : h('span', { class: 'muted' }, '–');
  return h('tr', { class: `run${r.has_error ? ' has-error' : ''}${fresh ? ' fresh' : ''}`, onclick: open, dataset: { id: r.id } },
    h('td', { class: 'c-name' },
      h('span', { class: `dot ${r.has_error ? 'err' : 'ok'}`, title: r.has_error ? 'has errors' : 'ok' }),
      h('a', { class: 'run-name', href: link }, r.name || '(unnamed)'),
      r.redaction_disabled ? h('span', { class: 'badge danger', title: 'stored with redaction disabled' }, 'unredacted') : null,
      r.models && r.models.length ? h('span', { class: 'models' }, r.models.join(', ')) : null),
    h('td', { class: 'c-start', title: fmtAgo(r.start_time) }, fmtTime(r.start_time)),
    h('td', { class: 'c-duration num' }, fmtDuration(r.duration_ms)),
    h('td', { class: 'c-steps num' }, fmtInt(r.steps)),
    h('td', { class: 'c-tokens num' }, fmtInt(r.total_tokens)),
    h('td', { class: 'c-cost num' }, fmtCost(r.total_cost_usd)),
    h('td', { class: `c-errors num${r.error_count ? ' err-text' : ''}` }, r.error_count ? fmtInt(r.error_count) : '–'),
    h('td', { class: 'c-user' }, filterLink('user', r.user_id, short(r.user_id))),
    h('td', { class: 'c-session' }, filterLink('session', r.session_id, short(r.session_id))),
    h('td', { class: 'c-tags' }, (r.tags || []).map((t) => h('a', { class: 'tag', href: urlWith(params, { tag: t, offset: null }) }, t))));
}

function short(id) {
  if (!id) return id;
  return id.length > 18 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

function pager(data, params, ctx) {
  const offset = data.offset;
  const n = data.runs.length;
  // Every filter is the store's: the total is exact.
  const info = n ? `${fmtInt(offset + 1)}–${fmtInt(offset + n)} of ${fmtInt(data.total)}` : `0 of ${fmtInt(data.total)}`;
  const prev = offset > 0 ? urlWith(params, { offset: Math.max(0, offset - data.limit) || null }) : null;
  return h('div', { class: 'pager' },
    h('span', { class: 'muted', id: 'pager-info' }, info),
    h('a', { class: `btn${prev ? '' : ' disabled'}`, href: prev || urlWith(params, {}) }, '← Prev'),
    data.next_offset !== null && data.next_offset !== undefined
      ? h('a', { class: 'btn', id: 'next-page', href: urlWith(params, { offset: data.next_offset }) }, 'Next →')
      : h('span', { class: 'btn disabled' }, 'Next →'));
}

export async function renderList(main, params, ctx) {
  const title = h('div', { class: 'page-head' },
    h('h1', {}, 'Traces'),
    h('span', { class: 'live', id: 'live', title: 'New runs appear by themselves on the first page' }, h('span', { class: 'pulse' }), 'Live'));
  const body = h('div', { id: 'list-body' }, h('div', { class: 'loading' }, 'Loading…'));
  add(main, title, filterBar(params, ctx), activeChips(params, ctx), body);

  const query = paramsObject(params);
  if (!query.limit) query.limit = PAGE;
  let known = new Set();
  let lastCount = null;

  async function load(first) {
    const data = await api.get('/api/runs', query);
    if (!ctx.current()) return;
    if (first) performance.mark('tc:list-data');
    const fresh = (id) => !first && !known.has(id);
    const table = h('table', { class: 'runs', id: 'runs-table' }, header(params, ctx),
      h('tbody', {}, data.runs.map((r) => row(r, params, ctx, fresh(r.id)))));
    known = new Set(data.runs.map((r) => r.id));
    fill(body, 
      data.runs.length ? h('div', { class: 'table-wrap' }, table)
        : empty(FILTERS.some((k) => params.get(k)) ? 'No traces match these filters.' : 'No traces yet. Runs your agents record appear here.'),
      pager(data, params, ctx));
  }

  try { await load(true); } catch (e) { fill(body, errorBox(e)); return null; }
  performance.mark('tc:list-rendered');

  // Live: poll the store's run count; reload the first page when it changes.
  const liveOk = !params.get('offset');
  const liveEl = document.getElementById('live');
  if (!liveOk && liveEl) { liveEl.classList.add('paused'); liveEl.lastChild.textContent = 'Live (page 1 only)'; }
  const timer = setInterval(async () => {
    if (!liveOk || document.hidden) return;
    try {
      const c = await api.get('/api/changes');
      if (lastCount !== null && c.count !== lastCount) await load(false);
      lastCount = c.count;
    } catch (_) { /* keep polling */ }
  }, POLL_MS);
  api.get('/api/changes').then((c) => { lastCount = c.count; }).catch(() => {});
  return () => clearInterval(timer);
}
