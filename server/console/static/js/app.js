// The console's shell: sign-in, navigation between the four views, server-down banner.

import { ApiError, api, session } from "./api.js";
import { chatView } from "./chat.js";
import { h, replace } from "./dom.js";
import { governanceView } from "./governance.js";
import { inboxView } from "./inbox.js";
import { runsView } from "./runs.js";

const VIEWS = { inbox: inboxView, chat: chatView, runs: runsView, governance: governanceView };
const main = document.getElementById("main");
const banner = document.getElementById("banner");
const who = document.getElementById("who");
const count = document.getElementById("inbox-count");
let stopView = null;

const ctx = {
  identity: "",
  auth: false,
  setCount(n) {
    count.textContent = n ? String(n) : "";
    count.setAttribute("aria-label", `${n} waiting`);
  },
  signedOut(err) {
    session.signOut();
    showSignIn(err ? err.detail : "");
  },
};

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

function stop() {
  if (stopView) stopView();
  stopView = null;
}

function showSignIn(problem) {
  stop();
  replace(who);
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, "data-testid": "api-key" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", text: "Sign in" }),
    h("p", { class: "muted", text: "Use an API key of this server (staffgraph keys create). It is kept for this browser tab only." }),
    problem ? h("div", { class: "error", role: "alert", text: problem }) : null,
    h("label", { for: "api-key", text: "API key" }),
    input,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", "data-testid": "sign-in", text: "Sign in" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    session.signIn(input.value);
    start();
  });
  replace(main, form);
  input.focus();
}

function route() {
  stop();
  const [, name = "inbox", ...rest] = (location.hash || "#/inbox").split("/");
  const view = VIEWS[name] ? name : "inbox";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view[0].toUpperCase()}${view.slice(1)} · staffgraph console`;
  stopView = VIEWS[view](main, ctx, rest.map(decodeURIComponent).join("/")) || null;
}

function showWho() {
  const name = ctx.identity || "local operator";
  const parts = [h("span", { "data-testid": "identity", text: `Signed in as ${name}` })];
  if (ctx.auth) {
    const out = h("button", { type: "button", text: "Sign out" });
    out.addEventListener("click", () => ctx.signedOut());
    parts.push(" ", out);
  }
  replace(who, parts);
}

async function start() {
  let info;
  try {
    info = await api("GET", "/ui/api/session");
    showBanner("");
  } catch (err) {
    showBanner(err instanceof ApiError && err.status === 0 ? err.detail : `The console cannot start: ${err.detail || err}`);
    setTimeout(start, 2000);
    return;
  }
  ctx.auth = Boolean(info.auth);
  if (ctx.auth && !session.key()) return showSignIn("");
  try {
    const me = await api("GET", "/ui/api/me");
    ctx.identity = me.identity;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return ctx.signedOut(err);
    showBanner(err.detail || String(err));
    setTimeout(start, 2000);
    return;
  }
  showWho();
  route();
}

window.addEventListener("hashchange", () => {
  if (!ctx.auth || session.key()) route();
});
window.addEventListener("online", () => showBanner(""));
start();
