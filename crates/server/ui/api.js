// Talking to the server: JSON over fetch with the session cookie, errors as ApiError with the
// server's own reason, and who is signed in.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Called when the session is gone (401): the app shows the sign-in page. */
let onSignedOut = () => {};
export function whenSignedOut(f) { onSignedOut = f; }

/** `GET`/`POST` a JSON API path; resolves to the parsed body, rejects with ApiError. */
export async function api(path, { method = 'GET', body, quiet401 = false } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the server did not answer (${e.message})`);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401 && !quiet401) onSignedOut();
  if (!r.ok) {
    const reason = (data && typeof data === 'object' && data.error) || `HTTP ${r.status}`;
    throw new ApiError(r.status, reason);
  }
  return data;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

const RANK = { viewer: 1, operator: 2, admin: 3 };

/** The signed-in user: {username, role}, or null. */
export const session = { user: null };

/** Whether the signed-in user has at least `role`. */
export function can(role) {
  return !!session.user && (RANK[session.user.role] || 0) >= RANK[role];
}
