// What every page script shares: the page's embedded data, the session token, the way to log-in.

/** The JSON the server rendered into <script type="application/json" id="page-data">. */
export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : {};
}

/** Go to the log-in page and come back here afterwards. */
export function goToLogin({ expired = false } = {}) {
  const back = location.pathname + location.search;
  const query = `?next=${encodeURIComponent(back)}${expired ? "&expired=1" : ""}`;
  location.assign(`/login${query}`);
}

/**
 * The viewer's token, asked of the server each time (it lives in an HttpOnly cookie that page
 * scripts cannot read). Null when nobody is logged in; a cookie that expired leads to log-in.
 */
export async function sessionToken() {
  const response = await fetch("/auth/session", { credentials: "same-origin", cache: "no-store" });
  if (response.ok) return (await response.json()).access_token;
  if (response.status === 401) {
    const body = await response.json().catch(() => ({}));
    if (body.expired) goToLogin({ expired: true });
    return null;
  }
  throw new Error(`session lookup failed: ${response.status}`);
}

/** fetch() against the JSON API with the viewer's token; rejects with the problem's detail. */
export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.code = data && data.code;
    throw error;
  }
  return data;
}

/** True when the viewer asked the system for less motion. */
export function reducedMotion() {
  return window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

/** Number with thousands separators, as the server renders counts. */
export function count(n) {
  return Number(n).toLocaleString("en-US");
}

/** A link to an archived season's final standings. */
export function seasonLink(boardId, season) {
  const link = document.createElement("a");
  link.href = `/boards/${encodeURIComponent(boardId)}/seasons/${season}`;
  link.textContent = `Season ${season}`;
  return link;
}
