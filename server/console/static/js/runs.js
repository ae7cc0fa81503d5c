// Runs: a thread's runs with status, duration, node timeline, token usage and cost per role
// and model, and errors.

import { api } from "./api.js";
import { explain } from "./decisions.js";
import { ago, duration, emptyBox, errorBox, facts, h, pretty, replace } from "./dom.js";

const FINISHED = new Set(["success", "error", "timeout", "interrupted"]);

function statusNode(status) {
  return h("span", { class: `status status-${status}`, "data-testid": "run-status", text: status });
}

function usageTable(caption, rows) {
  const entries = Object.entries(rows || {});
  if (!entries.length) return null;
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden", text: caption }),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", text: caption }), h("th", { scope: "col", text: "Calls" }), h("th", { scope: "col", text: "Input tokens" }), h("th", { scope: "col", text: "Output tokens" }), h("th", { scope: "col", text: "Cost (USD)" }))),
    h(
      "tbody",
      {},
      entries.map(([name, u]) =>
        h("tr", { "data-testid": "usage-row" }, h("th", { scope: "row", text: name }), h("td", { text: u.calls ?? 0 }), h("td", { text: u.input_tokens ?? 0 }), h("td", { text: u.output_tokens ?? 0 }), h("td", { text: `${(u.cost_usd ?? 0).toFixed(4)}${u.cost_estimated ? " (est.)" : ""}` })),
      ),
    ),
  );
}

function timeline(run, checkpoints) {
  const mine = checkpoints.filter((c) => (c.metadata || {}).run_id === run.run_id).reverse();
  if (!mine.length) return h("p", { class: "muted", text: "No checkpoints recorded for this run." });
  return h(
    "ol",
    { class: "timeline", "aria-label": "Node timeline" },
    mine.map((c) => {
      const step = (c.metadata || {}).step;
      const nodes = (c.tasks || []).map((t) => t.name);
      const errors = (c.tasks || []).filter((t) => t.error).map((t) => `${t.name}: ${pretty(t.error)}`);
      const interrupts = (c.tasks || []).flatMap((t) => t.interrupts || []);
      const what = nodes.length ? `runs ${nodes.join(", ")}` : "done";
      return h(
        "li",
        { "data-testid": "timeline-step" },
        h("strong", { text: `Step ${step}` }),
        " · ",
        ago(c.created_at),
        ` · ${(c.metadata || {}).source || ""} → ${what}`,
        interrupts.length ? h("span", { class: "status status-interrupted", text: " · waiting on a decision" }) : null,
        errors.length ? h("div", { class: "error", text: errors.join("\n") }) : null,
      );
    }),
  );
}

function runCard(run, checkpoints, thread, open) {
  const started = new Date(run.created_at);
  const ended = FINISHED.has(run.status) ? new Date(run.updated_at) : new Date();
  const usage = run.usage || {};
  const graph = (run.metadata || {}).graph_id || run.assistant_id;
  const details = h(
    "details",
    { class: "card run", "data-testid": "run", "data-run-id": run.run_id, open: open || undefined },
    h("summary", {}, statusNode(run.status), ` ${graph} · run ${run.run_id.slice(0, 8)} · `, ago(run.created_at), ` · ${duration((ended - started) / 1000)}`, usage.total_tokens ? ` · ${usage.total_tokens} tokens` : ""),
    facts([
      ["Run", run.run_id],
      ["Started", started.toLocaleString()],
      ["Duration", duration((ended - started) / 1000)],
      ["Tokens", usage.total_tokens !== undefined ? `${usage.input_tokens} in, ${usage.output_tokens} out${usage.estimated ? " (estimated)" : ""}` : "not recorded yet"],
      ["Cost (USD)", usage.cost_usd !== undefined ? usage.cost_usd.toFixed(4) : ""],
    ]),
    run.status === "error" && thread.error ? errorBox(`Error: ${pretty(thread.error)}`) : null,
    h("h3", { text: "Node timeline" }),
    timeline(run, checkpoints),
    usage.by_role ? h("h3", { text: "Usage per role" }) : null,
    usageTable("Role", usage.by_role),
    usage.by_model ? h("h3", { text: "Usage per model" }) : null,
    usageTable("Model", usage.by_model),
  );
  return details;
}

async function threadPage(main, threadId) {
  const thread = await api("GET", `/threads/${threadId}`);
  const runs = await api("GET", `/threads/${threadId}/runs?limit=50`);
  const checkpoints = await api("POST", `/threads/${threadId}/history`, { limit: 200 });
  replace(
    main,
    h("p", {}, h("a", { href: "#/runs", text: "← All threads" })),
    h("h1", {}, "Runs of thread ", h("code", { text: threadId.slice(0, 8) })),
    facts([
      ["Thread status", h("span", { class: `status status-${thread.status}`, "data-testid": "thread-status", text: thread.status })],
      ["Graph", (thread.metadata || {}).graph_id || ""],
      ["Conversation", h("a", { href: `#/chat/${threadId}`, text: "open in chat" })],
    ]),
    thread.status === "error" && thread.error ? errorBox(`The thread's last run failed: ${pretty(thread.error)}`) : null,
    runs.length ? runs.map((run, i) => runCard(run, checkpoints, i === 0 ? thread : {}, i === 0)) : emptyBox("No runs on this thread yet."),
  );
  return thread.status === "busy" || runs.some((r) => !FINISHED.has(r.status));
}

async function threadList(main) {
  const threads = await api("POST", "/threads/search", { limit: 50, sort_by: "updated_at", sort_order: "desc" });
  replace(
    main,
    h("h1", { text: "Runs" }),
    h("p", { class: "muted", text: "Pick a thread to see its runs." }),
    threads.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Thread" }), h("th", { scope: "col", text: "Graph" }), h("th", { scope: "col", text: "Status" }), h("th", { scope: "col", text: "Updated" }))),
          h(
            "tbody",
            {},
            threads.map((t) => h("tr", {}, h("td", {}, h("a", { href: `#/runs/${t.thread_id}`, text: t.thread_id.slice(0, 8) })), h("td", { text: (t.metadata || {}).graph_id || "–" }), h("td", {}, h("span", { class: `status status-${t.status}`, text: t.status })), h("td", {}, ago(t.updated_at)))),
          ),
        )
      : emptyBox("No threads yet: start one in Chat."),
  );
}

export function runsView(main, ctx, threadId) {
  let stopped = false;
  let timer = null;
  const load = async () => {
    try {
      const live = threadId ? await threadPage(main, threadId) : await threadList(main);
      if (live && !stopped) timer = setTimeout(load, 1500);
    } catch (err) {
      replace(main, h("h1", { text: "Runs" }), errorBox(explain(err)));
      if (!stopped) timer = setTimeout(load, 3000);
    }
  };
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
