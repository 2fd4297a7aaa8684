// The JSON API (same origin; the access cookie travels by itself).

export async function get(path, params) {
  const qs = params ? new URLSearchParams(params).toString() : '';
  // No extra headers: the request must equal the page's preload hint to use its answer.
  const res = await fetch(qs ? `${path}?${qs}` : path, { credentials: 'same-origin' });
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`);
  return body;
}

export async function erase(id) {
  const res = await fetch(`/api/runs/${encodeURIComponent(id)}`, {
    method: 'DELETE', credentials: 'same-origin', headers: { 'X-TraceCraft-Erase': id },
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`);
  return body;
}

let metaPromise = null;
export function meta() {
  if (!metaPromise) metaPromise = get('/api/meta');
  return metaPromise;
}
