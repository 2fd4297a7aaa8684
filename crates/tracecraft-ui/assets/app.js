// The trace browser: a tiny router over history.pushState. Pages render into #main and may
// return a cleanup function (timers, listeners).
import { h, fill, add, clear } from './dom.js';
import * as api from './api.js';

// Each page's module is loaded when the page is first shown (the server's page carries a
// modulepreload hint for the page it serves), so a first load evaluates only what it draws.
const routes = [
  [/^\/$/, 'runs', () => import('./list.js').then((m) => m.renderList)],
  [/^\/runs\/([0-9a-fA-F-]{36})$/, 'runs', () => import('./run.js').then((m) => m.renderRun)],
  [/^\/sessions$/, 'sessions', () => import('./groups.js').then((m) => m.renderSessions)],
  [/^\/users$/, 'users', () => import('./groups.js').then((m) => m.renderUsers)],
  [/^\/overview$/, 'overview', () => import('./charts.js').then((m) => m.renderOverview)],
];

let cleanup = null;
let generation = 0;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/** Changes the query string without a new page render (state kept by the page itself). */
export function setQuery(params, { replace = true } = {}) {
  const qs = new URLSearchParams(params).toString();
  const url = location.pathname + (qs ? `?${qs}` : '');
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
}

async function render() {
  const main = document.getElementById('main');
  if (cleanup) { try { cleanup(); } catch (_) { /* ignore */ } cleanup = null; }
  const gen = ++generation;
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  for (const [re, page, load] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('nav.side a.nav')) {
      a.classList.toggle('active', a.dataset.page === page);
    }
    let fn;
    try { fn = await load(); } catch (e) {
      if (gen === generation) clear(main).appendChild(h('div', { class: 'empty' }, 'This page could not be loaded.'));
      return;
    }
    if (gen !== generation) return;
    clear(main);
    const ctx = { navigate, setQuery, current: () => gen === generation };
    const c = await fn(main, params, ctx, ...m.slice(1));
    if (gen === generation) cleanup = typeof c === 'function' ? c : null;
    else if (typeof c === 'function') c();
    return;
  }
  clear(main).appendChild(h('div', { class: 'empty' }, 'Page not found.'));
}

// Internal links navigate without a reload; modified clicks keep the browser's behaviour.
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//')) return;
  ev.preventDefault();
  navigate(href);
});

window.addEventListener('popstate', render);

api.meta().then((m) => {
  const el = document.getElementById('store-info');
  if (el) {
    fill(el, 
      h('div', {}, `${m.store} store`),
      h('div', {}, m.allow_erase ? 'erasure enabled' : 'read-only'),
      h('div', { class: 'muted' }, `v${m.version}`),
    );
  }
}).catch(() => {});

performance.mark('tc:app-start');
render();
