// Governance: propose changes, decide pending ones, see every role version with its diff and
// who approved it, and roll a role back through the same approval flow.

import { api } from "./api.js";
import { approvalCard, decideAndWait, explain } from "./decisions.js";
import { ago, emptyBox, errorBox, facts, h, pretty, replace } from "./dom.js";

const POLL_MS = 1500;

function describe(change) {
  if (!change) return "";
  const value = String(change.value || "").slice(0, 200);
  if (change.operation === "add") return `Add '${value}' to the ${change.attribute} of role '${change.role}'.`;
  if (change.operation === "remove") return `Remove '${value}' from the ${change.attribute} of role '${change.role}'.`;
  return `Set the ${change.attribute} of role '${change.role}' to '${value}'.`;
}

function diffList(diff) {
  if (!diff || !diff.length) return h("p", { class: "muted", text: "No difference in the definition." });
  return h(
    "ul",
    { class: "diff", "data-testid": "role-diff", "aria-label": "What changed" },
    diff.flatMap((d) =>
      d.added || d.removed
        ? [...(d.removed || []).map((i) => h("li", { class: "del", text: `− ${d.field}: ${i}` })), ...(d.added || []).map((i) => h("li", { class: "add", text: `+ ${d.field}: ${i}` }))]
        : [h("li", { class: "del", text: `− ${d.field}: ${pretty(d.before)}` }), h("li", { class: "add", text: `+ ${d.field}: ${pretty(d.after)}` })],
    ),
  );
}

async function startRun(input) {
  const thread = await api("POST", "/threads", { metadata: {} });
  await api("POST", `/threads/${thread.thread_id}/runs`, { assistant_id: "governance", input });
  return thread.thread_id;
}

export function governanceView(main, ctx) {
  const problem = h("div");
  const note = h("div", { "aria-live": "polite" });
  const pending = h("div", { id: "governance-pending" });
  const proposals = h("div", { id: "governance-proposals" });
  const roles = h("div", { id: "governance-roles" });
  const instructions = h("div", { id: "governance-instructions" });
  const tension = h("textarea", { id: "tension", rows: 3, "data-testid": "governance-tension" });
  const propose = h("form", { class: "card", "aria-labelledby": "propose-title" },
    h("h2", { id: "propose-title", text: "Propose a change" }),
    h("label", { for: "tension", text: "What is not working (the tension)" }),
    tension,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", "data-testid": "governance-propose", text: "Propose" })));
  replace(
    main,
    h("h1", { text: "Governance" }),
    h("p", { class: "muted", text: "Changes to roles are proposed, assessed, approved by a person, then stored as a new version." }),
    problem,
    note,
    propose,
    h("h2", { text: "Waiting for a decision" }),
    pending,
    h("h2", { text: "Role versions" }),
    roles,
    h("h2", { text: "Instruction versions" }),
    instructions,
    h("h2", { text: "Proposals" }),
    proposals,
  );
  const cards = new Map();
  let stopped = false;
  let timer = null;
  let shown = "";

  async function onDecide(item, decisions) {
    const next = await decideAndWait(item, decisions);
    refresh();
    return `Decided by ${ctx.identity || "you"}. ${next.text}`;
  }

  function renderPending(items) {
    const seen = new Set();
    for (const item of items) {
      const key = `${item.thread_id}:${item.interrupt_id}`;
      seen.add(key);
      if (!cards.has(key)) {
        const card = approvalCard(item, { onDecide });
        cards.set(key, card);
        pending.append(card);
      }
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        card.remove();
        cards.delete(key);
      }
    }
    pending.querySelector(".empty")?.remove();
    if (!items.length) pending.append(emptyBox("No change is waiting for a decision."));
  }

  function rollbackButton(role, version, previous) {
    const button = h("button", { type: "button", "data-testid": "role-rollback", text: `Roll back to version ${previous.version}` });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        for (const change of version.rollback) {
          await startRun({ messages: [{ role: "user", content: `Roll back role ${role.role} to version ${previous.version}: ${describe(change)}` }], change });
        }
        replace(note, h("p", { class: "notice", text: `Rollback of ${role.role} to version ${previous.version} proposed: approve it above.` }));
        refresh();
      } catch (err) {
        replace(note, errorBox(explain(err)));
        button.disabled = false;
      }
    });
    return button;
  }

  function renderRoles(list, approvers) {
    if (!list.length) return replace(roles, emptyBox("No role has changed yet: every role is as defined in roles/."));
    replace(
      roles,
      list.map((role) =>
        h(
          "section",
          { class: "card", "data-testid": "role-history", "data-role": role.role, "aria-label": `Role ${role.role}` },
          h("h3", {}, `${role.role} · version ${role.current}`),
          h(
            "ol",
            { class: "list", reversed: true },
            [...role.versions].reverse().map((version, i, all) =>
              h(
                "li",
                { class: "card", "data-testid": "role-version", "data-version": version.version },
                h("strong", { text: `Version ${version.version}` }),
                version.created_at ? [" · ", ago(version.created_at)] : null,
                h("p", { text: version.summary }),
                version.version > 0
                  ? facts([["Approved by", version.approved_by || approvers.get(version.change_id) || "not recorded"], ["Change", version.change_id]])
                  : null,
                version.version > 0 ? diffList(version.diff) : null,
                i === 0 && version.version > 0 && version.rollback && version.rollback.length ? rollbackButton(role, version, all[1]) : null,
              ),
            ),
          ),
        ),
      ),
    );
  }

  function renderInstructions(rules) {
    if (!rules.length) return replace(instructions, emptyBox("No role has learned instructions yet."));
    replace(
      instructions,
      rules.map((rule) =>
        h(
          "section",
          { class: "card", "data-testid": "instruction-history", "data-rule": rule.rule, "aria-label": `Instruction ${rule.rule} of ${rule.area}` },
          h("h3", { text: `${rule.area} · ${rule.rule}` }),
          h(
            "ol",
            { class: "list", reversed: true },
            [...rule.versions].reverse().map((v) =>
              h(
                "li",
                { class: "card", "data-testid": "instruction-version", "data-version": v.version, "data-status": v.status },
                h("strong", { text: `Version ${v.version}` }),
                " · ",
                h("span", { class: `status status-${v.status === "approved" ? "success" : v.status === "pending" ? "pending" : "error"}`, text: v.status }),
                v.created_at ? [" · ", ago(v.created_at)] : null,
                v.before === null || v.before === undefined
                  ? h("p", { text: v.text })
                  : h("ul", { class: "diff", "aria-label": "What changed" }, h("li", { class: "del", text: `− ${v.before}` }), h("li", { class: "add", text: `+ ${v.text}` })),
                facts([
                  ["Why", v.reason],
                  ["Decided by", v.decided_by ? String(v.decided_by).replace(/^human:/, "") : ""],
                  ["Decision note", v.decision_reason],
                ]),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function renderProposals(threads) {
    const approvers = new Map();
    const rows = [];
    for (const t of threads) {
      const v = t.values || {};
      const outcome = v.outcome || {};
      const last = (v.decisions || [])[v.decisions ? v.decisions.length - 1 : 0] || {};
      const who = outcome.decided_by || last.decided_by || (outcome.status ? "local operator" : "");
      if (v.change_id && outcome.status === "applied") approvers.set(v.change_id, who);
      const decisions = (v.decisions || []).map((d) => `${d.type}${d.message ? ` (${d.message})` : ""}`).join(", ");
      rows.push(
        h(
          "li",
          { class: "card", "data-testid": "governance-proposal", "data-thread-id": t.thread_id },
          h("strong", { text: v.proposal ? describe(v.proposal) : v.tension || "Proposal being prepared…" }),
          facts([
            ["Tension", v.tension || ""],
            ["Outcome", outcome.status ? `${outcome.status}${outcome.version ? ` as version ${outcome.version}` : ""}${outcome.reason ? `: ${outcome.reason}` : ""}` : t.status === "interrupted" ? "waiting for a decision" : t.status],
            ["Decisions", decisions],
            ["Decided by", who],
            ["Updated", ago(t.updated_at)],
          ]),
        ),
      );
    }
    replace(proposals, rows.length ? h("ol", { class: "list" }, rows) : emptyBox("No proposals yet."));
    return approvers;
  }

  async function refresh() {
    if (stopped) return;
    clearTimeout(timer);
    try {
      const [inbox, threads, history] = await Promise.all([
        api("GET", "/ui/api/inbox"),
        api("POST", "/threads/search", { metadata: { graph_id: "governance" }, limit: 30, sort_by: "updated_at", sort_order: "desc" }),
        api("GET", "/ui/api/roles"),
      ]);
      replace(problem);
      renderPending(inbox.items.filter((i) => i.graph_id === "governance"));
      // Re-drawn only when something changed, so focus and reading position stay put.
      const seen = JSON.stringify([threads, history]);
      if (seen !== shown) {
        const approvers = renderProposals(threads);
        renderRoles(history.roles, approvers);
        renderInstructions(history.instructions || []);
        shown = seen;
      }
    } catch (err) {
      replace(problem, errorBox(explain(err)));
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  propose.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = tension.value.trim();
    if (!text) return;
    try {
      await startRun({ messages: [{ role: "user", content: text }] });
      tension.value = "";
      replace(note, h("p", { class: "notice", text: "Proposed. The assessed change appears below for a decision." }));
      refresh();
    } catch (err) {
      replace(note, errorBox(explain(err)));
    }
  });

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
