// The dashboard's only data source: the daemon's JSON API on the same origin.

// Unreachable means the request never got an HTTP answer.
export class Unreachable extends Error {}

// APIError is an HTTP answer other than 2xx; status and the API's message.
export class APIError extends Error {
  constructor(path, status, message) {
    super(`${path}: ${message} (HTTP ${status})`);
    this.status = status;
  }
}

const TIMEOUT_MS = 4000; // below the 5 s refresh, so polls never pile up

export async function get(path) {
  let resp;
  try {
    resp = await fetch(path, {signal: AbortSignal.timeout(TIMEOUT_MS), headers: {Accept: "application/json"}});
  } catch (e) {
    throw new Unreachable(`weir-daemon unreachable (${path}: ${e.message})`);
  }
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON: reported below */ }
  if (!resp.ok) {
    throw new APIError(path, resp.status, (body && body.error) || resp.statusText);
  }
  if (body === null) throw new APIError(path, resp.status, "response is not JSON");
  return body;
}

export const services = (w) => get(`/api/v1/services?window=${w}`);
export const topology = (w) => get(`/api/v1/topology?window=${w}`);
export const endpoints = (name, w) => get(`/api/v1/services/${encodeURIComponent(name)}/endpoints?window=${w}`);
export const series = (name, w, step) =>
  get(`/api/v1/services/${encodeURIComponent(name)}/series?window=${w}` + (step ? `&step=${step}` : ""));
export const pods = () => get("/api/v1/pods");
export const features = () => get("/api/v1/features");
