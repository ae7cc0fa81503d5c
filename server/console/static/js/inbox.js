// Inbox: every run waiting on a decision, newest first, refreshed every second.

import { api } from "./api.js";
import { approvalCard, decideAndWait, explain } from "./decisions.js";
import { emptyBox, errorBox, h, replace } from "./dom.js";

const POLL_MS = 1000;
const LABELS = { approve: "approved", edit: "edited", reject: "rejected", respond: "answered" };

function keyOf(item) {
  return `${item.thread_id}:${item.interrupt_id || item.task_id}`;
}

/** Render the inbox into `main`; returns a function that stops its polling. */
export function inboxView(main, ctx) {
  const list = h("div", { id: "approvals", "aria-live": "polite", "aria-busy": "true" });
  const problem = h("div");
  const recent = h("ol", { class: "list", id: "recent-decisions" });
  const recentSection = h("section", { "aria-labelledby": "recent-title", hidden: true },
    h("h2", { id: "recent-title", text: "Your recent decisions" }), recent);
  replace(
    main,
    h("h1", { text: "Inbox" }),
    h("p", { class: "muted", text: "Runs waiting on a decision, across threads and graphs, newest first. Updates on its own." }),
    problem,
    list,
    recentSection,
  );
  const cards = new Map();
  let stopped = false;
  let timer = null;

  async function onDecide(item, decisions) {
    const who = ctx.identity || "you";
    const kinds = decisions.map((d) => LABELS[d.type]).join(", ");
    const names = (item.actions || []).map((a) => a.name).join(", ");
    const entry = h("li", { class: "notice", "data-testid": "decision-outcome" }, `${names}: ${kinds} by ${who}. Waiting for the run…`);
    recentSection.hidden = false;
    recent.prepend(entry);
    try {
      const next = await decideAndWait(item, decisions);
      replace(entry, `${names}: ${kinds} by ${who}. ${next.text}`);
      entry.dataset.status = next.status;
      refresh();
      return `${kinds} by ${who}. ${next.text}`;
    } catch (err) {
      entry.remove();
      if (!recent.children.length) recentSection.hidden = true;
      throw err;
    }
  }

  function render(items) {
    const seen = new Set();
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      seen.add(key);
      let card = cards.get(key);
      if (!card) {
        card = approvalCard(item, { onDecide });
        cards.set(key, card);
      }
      if (previous ? previous.nextSibling !== card : list.firstChild !== card) {
        if (previous) previous.after(card);
        else list.prepend(card);
      }
      previous = card;
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        card.remove();
        cards.delete(key);
      }
    }
    const empty = list.querySelector(".empty");
    if (!items.length && !empty) list.append(emptyBox("Nothing is waiting for a decision."));
    if (items.length && empty) empty.remove();
    ctx.setCount(items.length);
  }

  async function refresh() {
    if (stopped) return;
    clearTimeout(timer);
    try {
      const data = await api("GET", "/ui/api/inbox");
      replace(problem);
      render(data.items || []);
      list.setAttribute("aria-busy", "false");
    } catch (err) {
      replace(problem, errorBox(explain(err)));
      if (err.status === 401) return ctx.signedOut(err);
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
