// LLM messages as a chat: system / user / assistant / tool roles, tool calls and their
// results. Understands the OpenAI chat shape (messages, tool_calls, tool_call_id), the
// Anthropic shape (system + content blocks: text, tool_use, tool_result) and plain
// prompt/completion strings. All text is inserted as text.
import { h } from './dom.js';

function asText(content) {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return JSON.stringify(content, null, 2);
}

function parseArgs(a) {
  if (typeof a !== 'string') return a;
  try { return JSON.parse(a); } catch (_) { return a; }
}

/** Normalizes one provider message to {role, parts: [{kind:'text'|'call'|'result'|'data', ...}]}. */
function normalize(m) {
  if (typeof m === 'string') return { role: 'user', parts: [{ kind: 'text', text: m }] };
  if (!m || typeof m !== 'object') return { role: 'unknown', parts: [{ kind: 'data', value: m }] };
  const role = String(m.role || m.type || 'message');
  const parts = [];
  const c = m.content;
  if (typeof c === 'string') parts.push({ kind: 'text', text: c });
  else if (Array.isArray(c)) {
    for (const b of c) {
      if (typeof b === 'string') parts.push({ kind: 'text', text: b });
      else if (b && (b.type === 'text' || b.type === 'input_text' || b.type === 'output_text')) parts.push({ kind: 'text', text: asText(b.text) });
      else if (b && b.type === 'tool_use') parts.push({ kind: 'call', name: b.name, id: b.id, args: b.input });
      else if (b && b.type === 'tool_result') parts.push({ kind: 'result', id: b.tool_use_id, text: asText(b.content) });
      else parts.push({ kind: 'data', value: b });
    }
  } else if (c !== undefined && c !== null) parts.push({ kind: 'data', value: c });
  for (const tc of m.tool_calls || []) {
    const fn = tc.function || tc;
    parts.push({ kind: 'call', name: fn.name, id: tc.id, args: parseArgs(fn.arguments !== undefined ? fn.arguments : fn.args) });
  }
  if (m.function_call) parts.push({ kind: 'call', name: m.function_call.name, args: parseArgs(m.function_call.arguments) });
  return { role, name: m.name, toolCallId: m.tool_call_id, parts };
}

function outputMessages(out) {
  if (!out || typeof out !== 'object') return [];
  if (Array.isArray(out.choices) && out.choices.length) {
    return out.choices.map((ch) => ch.message || { role: 'assistant', content: ch.text });
  }
  for (const k of ['message', 'response', 'completion', 'output', 'result', 'text', 'content', 'answer']) {
    const v = out[k];
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') return [{ role: 'assistant', content: v }];
    if (Array.isArray(v) && k === 'content') return [{ role: 'assistant', content: v }];
    if (typeof v === 'object' && (v.role || v.content !== undefined || v.tool_calls)) return [{ role: v.role || 'assistant', ...v }];
    if (typeof v === 'object' && Array.isArray(v.choices)) return outputMessages(v);
  }
  if (Array.isArray(out.messages)) return out.messages;
  if (Array.isArray(out.tool_calls)) return [{ role: 'assistant', tool_calls: out.tool_calls }];
  return [];
}

/** The step's conversation, or null when its inputs hold no messages or prompt. */
export function extractChat(step) {
  const inp = step.inputs || {};
  const msgs = [];
  if (typeof inp.system === 'string') msgs.push({ role: 'system', content: inp.system });
  if (Array.isArray(inp.messages)) msgs.push(...inp.messages);
  else if (typeof inp.prompt === 'string') msgs.push({ role: 'user', content: inp.prompt });
  else if (Array.isArray(inp.prompt)) msgs.push(...inp.prompt);
  if (!msgs.length) return null;
  const out = outputMessages(step.outputs);
  return { input: msgs.map(normalize), output: out.map(normalize) };
}

/** A tool result or message that is a JSON document reads better indented. */
function textOrJson(text) {
  const t = typeof text === 'string' ? text.trim() : '';
  if ((t.startsWith('{') && t.endsWith('}')) || (t.startsWith('[') && t.endsWith(']'))) {
    try { return h('pre', { class: 'json' }, JSON.stringify(JSON.parse(t), null, 2)); } catch (_) { /* not JSON */ }
  }
  return h('div', { class: 'msg-text' }, text);
}

function partEl(p) {
  if (p.kind === 'text') return textOrJson(p.text);
  if (p.kind === 'call') {
    return h('div', { class: 'tool-call' },
      h('div', { class: 'tc-head' }, h('span', { class: 'tc-icon' }, 'ƒ'), h('span', { class: 'tc-name' }, p.name || 'tool'), p.id ? h('span', { class: 'mono dim' }, p.id) : null),
      h('pre', { class: 'json' }, typeof p.args === 'string' ? p.args : JSON.stringify(p.args, null, 2)));
  }
  if (p.kind === 'result') {
    return h('div', { class: 'tool-result' }, h('div', { class: 'tc-head' }, 'result', p.id ? h('span', { class: 'mono dim' }, ` for ${p.id}`) : null), textOrJson(p.text));
  }
  return h('pre', { class: 'json' }, JSON.stringify(p.value, null, 2));
}

function messageEl(m, isOutput) {
  const role = m.role.toLowerCase();
  const cls = ['system', 'user', 'assistant', 'tool', 'function', 'developer'].includes(role) ? role : 'other';
  return h('div', { class: `msg role-${cls}${isOutput ? ' output' : ''}` },
    h('div', { class: 'msg-head' },
      h('span', { class: 'role' }, m.role),
      m.name ? h('span', { class: 'dim' }, m.name) : null,
      m.toolCallId ? h('span', { class: 'mono dim' }, `↩ ${m.toolCallId}`) : null,
      isOutput ? h('span', { class: 'out-tag' }, 'completion') : null),
    m.parts.map(partEl));
}

export function chatView(chat) {
  return h('div', { class: 'chat', id: 'chat' },
    chat.input.map((m) => messageEl(m, false)),
    chat.output.length ? h('div', { class: 'chat-sep' }, h('span', {}, 'response')) : null,
    chat.output.map((m) => messageEl(m, true)));
}
