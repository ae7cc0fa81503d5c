// Building the page safely: every piece of data goes in as text (textContent), never as HTML.

/**
 * Create an element. `attrs` keys: "class", "text" (textContent), "on<event>" (listener),
 * "dataset", booleans (set when true), anything else as an attribute. Children: nodes or strings.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Append children (nodes, strings as text, arrays flattened; null skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** "3 min ago" for an ISO time, with the exact time as a tooltip on a <time> element. */
export function ago(iso) {
  if (!iso) return h("span", { class: "muted", text: "unknown" });
  const then = new Date(iso);
  const seconds = Math.max(0, Math.round((Date.now() - then.getTime()) / 1000));
  let text;
  if (seconds < 60) text = `${seconds} s ago`;
  else if (seconds < 3600) text = `${Math.round(seconds / 60)} min ago`;
  else if (seconds < 86400) text = `${Math.round(seconds / 3600)} h ago`;
  else text = then.toLocaleString();
  return h("time", { datetime: then.toISOString(), title: then.toLocaleString(), text });
}

/** A duration in seconds as "1.2 s" / "3 min 4 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

/** Pretty JSON for display. */
export function pretty(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** A definition list from [label, value] pairs (values: text or nodes). */
export function facts(pairs) {
  const dl = h("dl", { class: "facts" });
  for (const [label, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(h("dt", { text: label }), h("dd", {}, value));
  }
  return dl;
}

/** An error box (role=alert) with the message. */
export function errorBox(message) {
  return h("div", { class: "error", role: "alert", text: message });
}

/** An empty-state box. */
export function emptyBox(message) {
  return h("p", { class: "empty", text: message });
}
