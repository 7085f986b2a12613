// The service's HTTP API as the page uses it: requests, plain-worded errors, and the SSE reader.

/** A request that failed, with a message fit to show as it is. */
export class ApiError extends Error {
  /**
   * @param {string} kind unreachable | busy | loading | timeout | stream | cut | http
   * @param {string} message
   * @param {number | null} [status]
   */
  constructor(kind, message, status = null) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
  }
}

// With AGENT_API_KEYS set, every API request carries the key the page was given; it is kept
// for this tab only (sessionStorage), never in the page's address or on disk.
const KEY = "agent-server.api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** `fetch`, with every failure turned into an ApiError (an abort is passed on as it is). A 401
 * also tells the page (the "api-key-needed" event), which asks for a key. */
export async function request(path, options = {}) {
  const key = apiKey();
  const headers = key ? { ...options.headers, Authorization: `Bearer ${key}` } : options.headers;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      "unreachable",
      "The server is unreachable. Check that it is running, then retry.",
    );
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJSON(path) {
  return (await request(path)).json();
}

/** POST /v1/ask with `stream: true`; resolves once the stream's headers are in. */
export function ask(body, signal) {
  return request("/v1/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
}

/** The events of a Server-Sent Events response, as `{event, data}` with `data` parsed. */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read().catch((error) => {
        if (error.name === "AbortError") throw error;
        throw new ApiError("cut", "The connection was lost before the answer was finished.");
      });
      if (done) break;
      buffer += value;
      const frames = buffer.split(/\r?\n\r?\n/);
      buffer = frames.pop();
      for (const frame of frames) {
        const parsed = parseFrame(frame);
        if (parsed) yield parsed;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon === 0) continue; // a comment
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  return { event, data: JSON.parse(data.join("\n")) };
}

async function errorFrom(response) {
  const status = response.status;
  if (status === 401) {
    const refused = Boolean(apiKey());
    window.dispatchEvent(new CustomEvent("api-key-needed", { detail: { refused } }));
    return new ApiError(
      "auth",
      refused
        ? "The server refused this API key (401). Enter the right key above, then retry."
        : "This server needs an API key (401). Enter it above, then retry.",
      status,
    );
  }
  let detail = "";
  try {
    const body = await response.json();
    if (typeof body.error === "string") detail = body.error;
    else if (Array.isArray(body.detail)) {
      detail = body.detail.map((d) => `${(d.loc ?? []).slice(1).join(".")}: ${d.msg}`).join("; ");
    } else if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not JSON: the status says enough
  }
  const wait = Number(response.headers.get("Retry-After"));
  const later = wait > 0 ? ` Try again in ${wait} s.` : "";
  if (status === 429) {
    return new ApiError("busy", `The server is busy with other answers (429).${later}`, status);
  }
  if (status === 503) {
    const why = detail && detail !== "the model is still loading" ? `: ${detail}` : "";
    return new ApiError("loading", `The model is not ready yet (503)${why}.${later}`, status);
  }
  if (status === 504) {
    return new ApiError("timeout", "The answer took too long and was stopped (timeout).", status);
  }
  const what = detail ? `: ${detail}` : "";
  return new ApiError("http", `The server refused the request (${status})${what}.`, status);
}
