// Runs grouped by session (with a conversation view of one session) and by user.
import { h, fill, add, clear, fmtCost, fmtInt, fmtTime, fmtAgo, fmtDuration, errorBox, empty, valueView } from './dom.js';
import * as api from './api.js';

function groupTable(kind, d) {
  const other = kind === 'session' ? 'Users' : 'Sessions';
  return h('div', { class: 'table-wrap' }, h('table', { class: 'runs groups', id: `${kind}s-table` },
    h('thead', {}, h('tr', {}, ['', kind === 'session' ? 'Session' : 'User', 'Runs', 'Errors', 'Tokens', 'Cost', 'First run', 'Last run', other].map((c) => h('th', {}, c)))),
    h('tbody', {}, d.groups.map((g) => {
      const href = kind === 'session' ? `/sessions?${new URLSearchParams({ id: g.id })}` : `/?${new URLSearchParams({ user: g.id })}`;
      return h('tr', {},
        h('td', {}, h('span', { class: `dot ${g.errors ? 'err' : 'ok'}` })),
        h('td', {}, h('a', { class: 'mono', href }, g.id), g.last_run ? h('div', { class: 'muted small' }, `last: ${g.last_run}`) : null),
        h('td', { class: 'num' }, fmtInt(g.runs)),
        h('td', { class: `num${g.errors ? ' err-text' : ''}` }, g.errors ? fmtInt(g.errors) : '–'),
        h('td', { class: 'num' }, fmtInt(g.tokens)),
        h('td', { class: 'num' }, fmtCost(g.cost)),
        h('td', {}, fmtTime(g.first)),
        h('td', { title: fmtTime(g.last) }, fmtAgo(g.last)),
        h('td', { class: 'mono dim' }, g.others.join(', '), g.other_count > g.others.length ? ` +${g.other_count - g.others.length}` : ''));
    }))));
}

async function renderGroups(main, params, kind) {
  const title = kind === 'session' ? 'Sessions' : 'Users';
  add(main, h('div', { class: 'page-head' }, h('h1', {}, title)), h('div', { class: 'loading' }, 'Loading…'));
  let d;
  try { d = await api.get(kind === 'session' ? '/api/sessions' : '/api/users', Object.fromEntries(params)); } catch (e) { main.lastChild.replaceWith(errorBox(e)); return null; }
  const note = `From all ${fmtInt(d.sampled)} runs.`;
  fill(main, 
    h('div', { class: 'page-head' }, h('h1', {}, title), h('span', { class: 'muted' }, note)),
    kind === 'user' ? h('p', { class: 'muted hint' }, 'User ids are shown as stored: pseudonymous where TraceCraft is configured to pseudonymize them.') : null,
    d.groups.length ? groupTable(kind, d) : empty(`No runs with a ${kind} id yet.`));
  return null;
}

/** One session as a conversation: each run's input and output, oldest first. */
async function renderConversation(main, id) {
  add(main, h('div', { class: 'loading' }, 'Loading…'));
  let d;
  try { d = await api.get('/api/runs', { session: id, sort: 'start', dir: 'asc', limit: 100, io: 1 }); } catch (e) { main.lastChild.replaceWith(errorBox(e)); return null; }
  fill(main, 
    h('div', { class: 'crumbs' }, h('a', { href: '/sessions' }, '← Sessions')),
    h('div', { class: 'page-head' }, h('h1', {}, 'Session'), h('span', { class: 'mono dim' }, id),
      h('a', { class: 'btn', href: `/?${new URLSearchParams({ session: id })}` }, 'As a list')),
    d.runs.length ? h('div', { class: 'conversation' }, d.runs.map((r) => h('div', { class: 'turn' },
      h('div', { class: 'turn-head' },
        h('a', { href: `/runs/${r.id}` }, r.name), h('span', { class: 'muted' }, ` ${fmtTime(r.start_time)} · ${fmtDuration(r.duration_ms)} · ${fmtInt(r.total_tokens)} tokens · ${fmtCost(r.total_cost_usd)}`),
        r.has_error ? h('span', { class: 'status err' }, 'Error') : null),
      h('div', { class: 'msg role-user' }, h('div', { class: 'msg-head' }, h('span', { class: 'role' }, 'input')), valueView(r.input)),
      r.error ? h('div', { class: 'banner warn' }, r.error) : null,
      h('div', { class: 'msg role-assistant output' }, h('div', { class: 'msg-head' }, h('span', { class: 'role' }, 'output')), valueView(r.output)))))
      : empty('No runs in this session.'),
    d.next_offset !== null && d.next_offset !== undefined ? h('p', { class: 'muted' }, `Showing the first ${d.runs.length} runs.`) : null);
  return null;
}

export function renderSessions(main, params) {
  const id = params.get('id');
  return id ? renderConversation(main, id) : renderGroups(main, params, 'session');
}

export function renderUsers(main, params) {
  return renderGroups(main, params, 'user');
}
