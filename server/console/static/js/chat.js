// Chat: pick an assistant, list and reopen its threads, send messages and watch the reply
// stream in, with tool calls, their results and approvals inline.

import { api, stream } from "./api.js";
import { approvalCard, explain, outcomeText } from "./decisions.js";
import { ago, emptyBox, errorBox, h, pretty, replace } from "./dom.js";

const LAST_ASSISTANT = "staffgraph.chat.assistant";

/** Text of a message's content (a string or a list of content blocks). */
export function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((block) => (typeof block === "string" ? block : block && block.type === "text" ? block.text : "")).join("");
  }
  return "";
}

function messageNode(message, toolNames) {
  const type = message.type || message.role;
  if (type === "human" || type === "user") {
    return h("div", { class: "msg msg-human", "data-testid": "chat-message", "data-type": "human" }, h("span", { class: "who-said", text: "You" }), textOf(message.content));
  }
  if (type === "tool") {
    const name = message.name || toolNames.get(message.tool_call_id) || "tool";
    return h(
      "div",
      { class: "msg msg-tool", "data-testid": "chat-message", "data-type": "tool" },
      h("span", { class: "who-said", text: `Result of ${name}` }),
      h("span", { "data-testid": "tool-result", text: textOf(message.content) }),
    );
  }
  const calls = (message.tool_calls || []).map((call) => {
    toolNames.set(call.id, call.name);
    return h("div", { class: "toolcall", "data-testid": "tool-call" }, h("strong", { text: `Calls ${call.name}` }), h("pre", { text: pretty(call.args) }));
  });
  const text = textOf(message.content);
  return h(
    "div",
    { class: "msg msg-ai", "data-testid": "chat-message", "data-type": "ai", "data-id": message.id || "" },
    h("span", { class: "who-said", text: message.name || "Assistant" }),
    text ? h("span", { class: "text", text }) : null,
    calls,
  );
}

export function chatView(main, ctx, threadId) {
  const select = h("select", { id: "assistant", "aria-describedby": "assistant-help" });
  const threads = h("ul", { class: "list", "aria-label": "Conversations" });
  const messages = h("div", { class: "messages", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  const approvals = h("div", { class: "inline-approvals" });
  const problem = h("div");
  const input = h("textarea", { id: "chat-input", "data-testid": "chat-input", rows: 3, placeholder: "Write a message; Ctrl+Enter sends" });
  const send = h("button", { class: "primary", type: "submit", "data-testid": "chat-send", text: "Send" });
  const form = h("form", { class: "composer", "aria-label": "New message" }, h("label", { for: "chat-input", class: "visually-hidden", text: "Message" }), input, send);
  const newThread = h("button", { type: "button", text: "New conversation" });
  const title = h("h1", { text: "Chat" });
  replace(
    main,
    title,
    h(
      "div",
      { class: "split" },
      h(
        "aside",
        { "aria-label": "Assistants and conversations" },
        h("label", { for: "assistant", text: "Assistant" }),
        select,
        h("p", { id: "assistant-help", class: "muted", text: "Conversations with this assistant:" }),
        newThread,
        threads,
      ),
      h("section", { "aria-label": "Conversation" }, problem, messages, approvals, form),
    ),
  );
  let assistants = [];
  let current = threadId || "";
  let stopped = false;
  let busy = false;

  const assistant = () => assistants.find((a) => a.assistant_id === select.value);

  function renderMessages(list) {
    const toolNames = new Map();
    replace(messages, list.length ? list.map((m) => messageNode(m, toolNames)) : emptyBox("No messages yet: write the first one below."));
  }

  async function loadThreads() {
    const chosen = assistant();
    if (!chosen) return;
    const found = await api("POST", "/threads/search", { metadata: { assistant_id: chosen.assistant_id }, limit: 30, sort_by: "updated_at", sort_order: "desc" });
    replace(
      threads,
      found.length
        ? found.map((t) => {
            const first = ((t.values && t.values.messages) || []).find((m) => m.type === "human");
            const label = first ? textOf(first.content).slice(0, 60) : `Thread ${t.thread_id.slice(0, 8)}`;
            return h("li", {}, h("a", { href: `#/chat/${t.thread_id}`, "aria-current": t.thread_id === current ? "true" : "false" }, label, h("br"), h("small", { class: "muted" }, t.status, " · ", ago(t.updated_at))));
          })
        : h("li", { class: "muted", text: "None yet." }),
    );
  }

  async function showApprovals() {
    replace(approvals);
    if (!current) return;
    const data = await api("GET", "/ui/api/inbox");
    for (const item of data.items.filter((i) => i.thread_id === current)) {
      approvals.append(approvalCard(item, { onDecide: resume, showThread: false }));
    }
  }

  async function openThread(id) {
    current = id;
    replace(problem);
    if (!id) {
      renderMessages([]);
      replace(approvals);
      return;
    }
    try {
      const thread = await api("GET", `/threads/${id}`);
      const assistantId = (thread.metadata || {}).assistant_id;
      if (assistantId && assistants.some((a) => a.assistant_id === assistantId)) select.value = assistantId;
      renderMessages((thread.values && thread.values.messages) || []);
      title.textContent = `Chat · ${(assistant() || {}).name || ""}`;
      if (thread.status === "error" && thread.error) problem.append(errorBox(`The last run failed: ${pretty(thread.error)}`));
      await showApprovals();
    } catch (err) {
      replace(problem, errorBox(explain(err)));
    }
  }

  async function runStream(body) {
    messages.setAttribute("aria-busy", "true");
    messages.dataset.run = "running";
    try {
      return await streamInto(body);
    } finally {
      messages.setAttribute("aria-busy", "false");
      messages.dataset.run = "finished";
    }
  }

  async function streamInto(body) {
    let streamed = null;
    let chunks = 0;
    let final = null;
    await stream(`/threads/${current}/runs/stream`, { ...body, stream_mode: ["messages-tuple", "values"], stream_subgraphs: true }, (name, data) => {
      if (stopped) return;
      // Tokens come from the agents inside the graph (subgraphs: "messages|agent:<task>");
      // the conversation itself is the root graph's values.
      const [event, namespace] = name.split("|");
      if (event === "messages" && Array.isArray(data)) {
        const [chunk] = data;
        const text = chunk ? textOf(chunk.content) : "";
        if (!text || !String(chunk.type || "").startsWith("AI")) return;
        if (!streamed || streamed.dataset.id !== chunk.id) {
          streamed = h("div", { class: "msg msg-ai streaming", "data-testid": "chat-message", "data-type": "ai", "data-id": chunk.id || "" }, h("span", { class: "who-said", text: "Assistant (typing)" }), h("span", { class: "text" }));
          messages.querySelector(".empty")?.remove();
          messages.append(streamed);
        }
        streamed.querySelector(".text").append(text);
        chunks += 1;
        streamed.dataset.chunks = String(chunks);
        messages.dataset.streamedChunks = String(chunks);
      } else if (event === "values" && !namespace && data && Array.isArray(data.messages)) {
        final = data;
        renderMessages(data.messages);
        messages.dataset.streamedChunks = String(chunks);
        streamed = null;
      } else if (event === "error") {
        replace(problem, errorBox(`The run failed: ${data && data.message ? data.message : pretty(data)}`));
      }
    });
    return final;
  }

  async function resume(item, decisions) {
    const body = { assistant_id: item.assistant_id, command: { resume: decisions.length && item.pending_in_thread > 1 ? { [item.interrupt_id]: { decisions } } : { decisions } } };
    const values = await runStream(body);
    const thread = await api("GET", `/threads/${current}`);
    await showApprovals();
    loadThreads();
    return outcomeText({ status: thread.status }, values || thread.values);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    const chosen = assistant();
    if (!text || !chosen || busy) return;
    busy = true;
    send.disabled = true;
    replace(problem);
    try {
      if (!current) {
        const thread = await api("POST", "/threads", { metadata: {} });
        current = thread.thread_id;
        history.replaceState(null, "", `#/chat/${current}`);
      }
      messages.querySelector(".empty")?.remove();
      messages.append(messageNode({ type: "human", content: text }, new Map()));
      input.value = "";
      await runStream({ assistant_id: chosen.assistant_id, input: { messages: [{ role: "user", content: text }] } });
      const thread = await api("GET", `/threads/${current}`);
      if (thread.status === "error") replace(problem, errorBox(`The run failed: ${pretty(thread.error)}`));
      await showApprovals();
      loadThreads();
    } catch (err) {
      replace(problem, errorBox(explain(err)));
    } finally {
      busy = false;
      send.disabled = false;
      input.focus();
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  select.addEventListener("change", () => {
    localStorage.setItem(LAST_ASSISTANT, select.value);
    current = "";
    history.replaceState(null, "", "#/chat");
    openThread("");
    loadThreads().catch((err) => replace(problem, errorBox(explain(err))));
  });
  newThread.addEventListener("click", () => {
    history.replaceState(null, "", "#/chat");
    openThread("");
    input.focus();
  });

  (async () => {
    try {
      assistants = await api("POST", "/assistants/search", { limit: 100 });
      replace(select, assistants.map((a) => h("option", { value: a.assistant_id, text: `${a.name} (${a.graph_id})` })));
      const remembered = localStorage.getItem(LAST_ASSISTANT);
      if (remembered && assistants.some((a) => a.assistant_id === remembered)) select.value = remembered;
      if (!assistants.length) replace(problem, errorBox("No assistants are served here."));
      await openThread(current);
      await loadThreads();
    } catch (err) {
      replace(problem, errorBox(explain(err)));
    }
  })();
  return () => {
    stopped = true;
  };
}
