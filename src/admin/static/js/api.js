// The admin API client: the caller's gateway token, OpenAI's error envelope turned into ApiError.

const TOKEN_KEY = "llm-gateway.token";

export class ApiError extends Error {
  constructor(status, message, { param = null, code = null, type = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.param = param;
    this.code = code;
    this.type = type;
  }
}

export const auth = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

let onUnauthorized = () => {};

/** Called with the ApiError whenever the gateway refuses the stored token. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function describeStatus(response) {
  const text = response.statusText ? ` ${response.statusText}` : "";
  return `The gateway answered ${response.status}${text}.`;
}

/** Call the admin API; resolves to the parsed JSON (null for 204) or throws ApiError with words to show. */
export async function request(method, path, { body, token = auth.token, query } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "Cannot reach the gateway. Check that it is running and try again.");
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (response.ok) throw new ApiError(response.status, "The gateway sent an answer this page cannot read.");
    }
  }
  if (!response.ok) {
    const envelope = data && typeof data === "object" ? data.error : null;
    const message = envelope && envelope.message ? envelope.message : describeStatus(response);
    const error = new ApiError(response.status, message, envelope || {});
    if (response.status === 401 && token && token === auth.token) onUnauthorized(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, query) => request("GET", path, { query }),
  post: (path, body) => request("POST", path, { body: body ?? {} }),
  put: (path, body) => request("PUT", path, { body }),
  patch: (path, body) => request("PATCH", path, { body }),
  del: (path) => request("DELETE", path),
};

/** GET that treats 404 (an endpoint this gateway does not have) as "nothing to show". */
export async function getOptional(path, query) {
  try {
    return await api.get(path, query);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
    throw error;
  }
}

const CONFIGS = "/api/llm-configurations";

export const configurations = {
  list: (query) => api.get(CONFIGS, query),
  stats: () => api.get(`${CONFIGS}/stats`),
  get: (id) => api.get(`${CONFIGS}/${encodeURIComponent(id)}`),
  create: (body) => api.post(CONFIGS, body),
  update: (id, body) => api.patch(`${CONFIGS}/${encodeURIComponent(id)}`, body),
  remove: (id) => api.del(`${CONFIGS}/${encodeURIComponent(id)}`),
  bulkDelete: (ids) => api.post(`${CONFIGS}/bulk-delete`, { ids }),
  setDefault: (id) => api.put(`${CONFIGS}/${encodeURIComponent(id)}/set-default`),
  test: (id) => api.post(`${CONFIGS}/${encodeURIComponent(id)}/test`),
  testAll: () => api.post(`${CONFIGS}/test-all`),
};

const TEAMS = "/api/teams";
const team = (id) => `${TEAMS}/${encodeURIComponent(id)}`;

export const teams = {
  list: () => getOptional(TEAMS),
  create: (name) => api.post(TEAMS, { name }),
  remove: (id) => api.del(team(id)),
  members: (id) => api.get(`${team(id)}/members`),
  addMember: (id, user, role) => api.post(`${team(id)}/members`, { user, role }),
  setRole: (id, userId, role) => api.patch(`${team(id)}/members/${encodeURIComponent(userId)}`, { role }),
  removeMember: (id, userId) => api.del(`${team(id)}/members/${encodeURIComponent(userId)}`),
  createConfiguration: (id, body) => api.post(`${team(id)}/llm-configurations`, body),
  share: (id, body) => api.post(`${team(id)}/llm-configurations/share`, body),
};

const INVITATIONS = "/api/invitations";
const invitation = (id) => `${INVITATIONS}/${encodeURIComponent(id)}`;

export const invitations = {
  list: () => getOptional(INVITATIONS),
  accept: (id) => api.post(`${invitation(id)}/accept`),
  decline: (id) => api.post(`${invitation(id)}/decline`),
};

/** Every configuration of the caller (the API pages at most `limit` at a time); `query` may name a team. */
export async function allConfigurations(query = {}) {
  const items = [];
  const limit = 100;
  for (let offset = 0; ; offset += limit) {
    const page = await configurations.list({ ...query, limit, offset });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) return items;
  }
}

let providersPromise = null;

/** Provider id → the name to show, from the catalog. */
export const providerNames = (catalog) => Object.fromEntries(catalog.map((p) => [p.id, p.name]));

/** The provider catalog, fetched once per page load. */
export function providers() {
  if (!providersPromise) {
    providersPromise = api.get("/api/providers").then((data) => (Array.isArray(data) ? data : data.items || [])).catch((error) => {
      providersPromise = null;
      throw error;
    });
  }
  return providersPromise;
}
