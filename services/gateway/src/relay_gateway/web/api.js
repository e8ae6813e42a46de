// The API key lives in this tab's session storage and travels only in the
// Authorization header: never in a URL, a link or the browser's history.
const KEY = "relay.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message, reason, retryAfterS) {
    super(message);
    this.status = status;
    this.reason = reason || null;
    this.retryAfterS = retryAfterS;
  }
  get retryable() {
    return [429, 502, 503, 504].includes(this.status) && this.reason !== "kill_switch";
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, ...extra };
}

export async function toError(response) {
  let message = `HTTP ${response.status}`;
  let reason = null;
  try {
    const body = await response.json();
    if (body && body.error) { message = body.error.message || message; reason = body.error.reason; }
  } catch (_) { /* not JSON: keep the status line */ }
  const retryAfter = Number.parseFloat(response.headers.get("Retry-After"));
  return new ApiError(response.status, message, reason,
    Number.isFinite(retryAfter) ? retryAfter : null);
}

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: authHeaders(headers), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await toError(response);
  return response.status === 204 ? null : response.json();
}

export function newIdempotencyKey() {
  return `relay-console-${crypto.randomUUID()}`;
}
