// One approval request and the decisions its review_configs allow: shared by inbox, chat and
// governance. Approve sends at once (one click); edit, reject and respond open a field first.

import { ApiError, api } from "./api.js";
import { ago, append, errorBox, facts, h, pretty, replace } from "./dom.js";
import { parseJson, validate } from "./schema.js";

const LABELS = { approve: "Approve", edit: "Edit arguments", reject: "Reject", respond: "Respond" };

/** The `command.resume` value answering `item` with `decisions` (one per action request). */
export function resumeValue(item, decisions) {
  const answer = { decisions };
  if (item.pending_in_thread > 1 && item.interrupt_id) return { [item.interrupt_id]: answer };
  return answer;
}

/** Why a decision failed, for people: refusals name their reason. */
export function explain(err) {
  if (err instanceof ApiError) {
    if (err.status === 403) return `Refused: ${err.detail}`;
    if (err.status === 401) return `Not signed in: ${err.detail}`;
    if (err.status === 0) return err.detail;
    return `The server answered ${err.status}: ${err.detail}`;
  }
  return String(err && err.message ? err.message : err);
}

/**
 * Resume the waiting run with `decisions` and wait for it to end (one request, authorized as
 * an answer: an approver may decide another owner's thread this way). Resolves with
 * {status: "success" | "interrupted" | "error", values, text}.
 */
export async function decideAndWait(item, decisions) {
  const values = await api("POST", `/threads/${item.thread_id}/runs/wait`, {
    assistant_id: item.assistant_id || item.graph_id,
    command: { resume: resumeValue(item, decisions) },
  });
  const status = statusOf(values);
  return { status, values, text: outcomeText({ status }, values) };
}

/** How a run ended, from the values `runs/wait` answers. */
export function statusOf(values) {
  if (values && values.__error__) return "error";
  if (values && Array.isArray(values.__interrupt__) && values.__interrupt__.length) return "interrupted";
  return "success";
}

function lastAiText(values) {
  const messages = (values && values.messages) || [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m && (m.type === "ai" || m.role === "assistant") && typeof m.content === "string" && m.content) {
      return m.content;
    }
  }
  return "";
}

/** One line on how a run ended. */
export function outcomeText(run, values) {
  if (run.status === "interrupted") return "The run is waiting on the next approval.";
  if (run.status === "error") {
    const error = values && values.__error__;
    return `The run failed${error ? `: ${error.error || ""} ${error.message || pretty(error)}` : "."}`;
  }
  if (values && values.outcome) return `Completed: ${pretty(values.outcome)}`;
  const said = lastAiText(values);
  return said ? `Completed. ${said}` : `Run ${run.status}.`;
}

function riskBadge(risk) {
  if (!risk) return null;
  return h("span", { class: `risk risk-${risk}`, text: `risk: ${risk}` });
}

function editorPanel(action, done) {
  const id = `edit-${Math.random().toString(36).slice(2)}`;
  const area = h("textarea", {
    id,
    class: "code",
    rows: Math.min(16, pretty(action.args).split("\n").length + 2),
    spellcheck: "false",
    "data-testid": "decision-args",
    "aria-describedby": `${id}-help ${id}-err`,
  });
  area.value = pretty(action.args);
  const problems = h("div", { id: `${id}-err`, class: "field-error", role: "alert" });
  const help = h("p", {
    id: `${id}-help`,
    class: "muted",
    text: action.args_schema ? "JSON, checked against the tool's argument schema before it is sent." : "JSON object.",
  });
  const submit = () => {
    const parsed = parseJson(area.value);
    if (parsed.error) return replace(problems, parsed.error);
    if (typeOf(parsed.value) !== "object") return replace(problems, "The arguments must be a JSON object.");
    const found = validate(action.args_schema, parsed.value);
    if (found.length) return replace(problems, found.join("\n"));
    replace(problems);
    done({ type: "edit", edited_action: { name: action.name, args: parsed.value } });
  };
  return { fields: [h("label", { for: id, text: `Arguments for ${action.name}` }), help, area, problems], submit, focus: area };
}

function typeOf(value) {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

function messagePanel(kind, done) {
  const id = `${kind}-${Math.random().toString(36).slice(2)}`;
  const label = kind === "reject" ? "Reason for rejecting (sent to the agent)" : "Your answer to the agent";
  const area = h("textarea", { id, "data-testid": `decision-${kind}-message`, rows: 3 });
  const problems = h("div", { class: "field-error", role: "alert" });
  const submit = () => {
    const text = area.value.trim();
    if (kind === "respond" && !text) return replace(problems, "Write the answer first.");
    replace(problems);
    done(text ? { type: kind, message: text } : { type: kind });
  };
  return { fields: [h("label", { for: id, text: label }), area, problems], submit, focus: area };
}

function actionBlock(action, index, state, several) {
  const panel = h("div", { class: "panel" });
  const chosen = h("p", { class: "muted", "aria-live": "polite" });
  const buttons = h("div", { class: "actions", role: "group", "aria-label": `Decisions for ${action.name}` });
  const decided = (decision) => {
    state.decisions[index] = decision;
    replace(panel);
    replace(chosen, `Chosen: ${LABELS[decision.type]}`);
    state.maybeSend();
  };
  const open = (kind) => {
    const built = kind === "edit" ? editorPanel(action, decided) : messagePanel(kind, decided);
    const submit = h("button", { class: "primary", type: "button", "data-testid": "decision-submit", text: `Send: ${LABELS[kind]}` });
    submit.addEventListener("click", built.submit);
    const cancel = h("button", { type: "button", text: "Cancel", onclick: () => replace(panel) });
    replace(panel, built.fields, h("div", { class: "actions" }, submit, cancel));
    built.focus.focus();
  };
  for (const kind of ["approve", "edit", "reject", "respond"]) {
    if (!action.allowed_decisions.includes(kind)) continue;
    const button = h("button", {
      type: "button",
      class: kind === "approve" ? "primary" : kind === "reject" ? "danger" : "",
      "data-testid": `decision-${kind}`,
      text: LABELS[kind],
    });
    button.addEventListener("click", () => (kind === "approve" ? decided({ type: "approve" }) : open(kind)));
    buttons.append(button);
  }
  state.buttons.push(buttons);
  return h(
    "section",
    { class: "action", "aria-label": `Action ${action.name}` },
    several ? h("h3", {}, action.name, " ", riskBadge(action.risk)) : null,
    action.description ? h("pre", { class: "description", text: action.description }) : null,
    h("p", { class: "muted", text: "Arguments" }),
    h("pre", { class: "args", "data-testid": "approval-args", text: pretty(action.args) }),
    action.allowed_decisions.length ? buttons : h("p", { class: "muted", text: "No decision is allowed here." }),
    chosen,
    panel,
  );
}

/**
 * The card for one pending approval. `onDecide(item, decisions)` sends them and resolves with
 * a line saying what happened next; a rejection shows its reason and leaves the card usable.
 */
export function approvalCard(item, { onDecide, showThread = true }) {
  const status = h("div", { class: "status-line", "aria-live": "polite" });
  const card = h("article", {
    class: "card approval",
    "data-testid": "approval-item",
    "data-thread-id": item.thread_id,
    "aria-label": `Approval for ${(item.actions || []).map((a) => a.name).join(", ") || "an interrupt"}`,
  });
  const first = (item.actions || [])[0] || {};
  const state = {
    decisions: new Array((item.actions || []).length),
    buttons: [],
    sending: false,
    async maybeSend() {
      if (state.sending || state.decisions.some((d) => !d)) return;
      state.sending = true;
      state.buttons.forEach((group) => group.querySelectorAll("button").forEach((b) => (b.disabled = true)));
      replace(status, h("p", { class: "muted", text: "Sending the decision and waiting for the run…" }));
      try {
        const line = await onDecide(item, state.decisions);
        replace(status, h("p", { class: "notice", text: line }));
      } catch (err) {
        replace(status, errorBox(explain(err)));
        state.decisions = new Array(state.decisions.length);
        state.buttons.forEach((group) => group.querySelectorAll("button").forEach((b) => (b.disabled = false)));
      } finally {
        state.sending = false;
      }
    },
  };
  const threadLinks = showThread
    ? h("span", {}, h("a", { href: `#/chat/${item.thread_id}`, text: "conversation" }), " · ", h("a", { href: `#/runs/${item.thread_id}`, text: "runs" }))
    : null;
  append(card, [
    h("header", {}, h("h2", { text: (item.actions || []).map((a) => a.name).join(", ") || "Interrupt" }), riskBadge(first.risk)),
    facts([
      ["Assistant / graph", item.graph_id ? `${item.graph_id}` : ""],
      ["Role", first.role || ""],
      ["Gate", first.gate || ""],
      ["Policy", first.policy || ""],
      ["Started by", item.started_by || "local operator"],
      ["Waiting since", ago(item.waiting_since)],
      ["Thread", threadLinks],
    ]),
    item.actions
      ? item.actions.map((action, i) => actionBlock(action, i, state, item.actions.length > 1))
      : [h("p", { class: "muted", text: "Not an approval request: answer it from the chat." }), h("pre", { text: pretty(item.value) })],
    status,
  ]);
  return card;
}
