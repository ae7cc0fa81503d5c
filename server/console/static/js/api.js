// The API, with the key the person signed in with (sessionStorage, sent as x-api-key).

const KEY = "staffgraph.apiKey";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export const session = {
  key() {
    return sessionStorage.getItem(KEY) || "";
  },
  signIn(key) {
    sessionStorage.setItem(KEY, key.trim());
  },
  signOut() {
    sessionStorage.removeItem(KEY);
  },
};

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const key = session.key();
  if (key) out["x-api-key"] = key;
  return out;
}

function detailOf(status, data) {
  if (data && typeof data === "object" && data.detail !== undefined) {
    return typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
  }
  if (typeof data === "string" && data) return data.slice(0, 500);
  return `HTTP ${status}`;
}

async function send(method, path, body, extra = {}) {
  const init = { method, headers: headers(extra), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, "Cannot reach the server: is staffgraph running? Retrying…");
  }
}

/** Call the API; resolves with the JSON answer, rejects with an ApiError (status, detail). */
export async function api(method, path, body) {
  const res = await send(method, path, body);
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) throw new ApiError(res.status, detailOf(res.status, data));
  return data;
}

/**
 * POST a streaming run and call `onEvent(event, data)` for each server-sent event.
 * Resolves when the stream ends.
 */
export async function stream(path, body, onEvent) {
  const res = await send("POST", path, body, { Accept: "text/event-stream" });
  if (!res.ok) {
    const text = await res.text();
    let data = text;
    try {
      data = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, detailOf(res.status, data));
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      const data = [];
      for (const line of frame.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {
        /* keep the text */
      }
      onEvent(event, parsed);
    }
  }
}
