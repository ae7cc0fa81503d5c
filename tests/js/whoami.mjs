// Drives a staffgraph server with the LangGraph JS SDK and an API key; prints what it saw as
// JSON. Run by tests/integration/server/test_js_sdk.py (STAFFGRAPH_URL, STAFFGRAPH_KEY).
import { Client } from "@langchain/langgraph-sdk";

const apiUrl = process.env.STAFFGRAPH_URL;
const client = new Client({ apiUrl, apiKey: process.env.STAFFGRAPH_KEY });

const thread = await client.threads.create();
const waited = await client.runs.wait(thread.thread_id, "whoami", { input: {} });
const events = [];
for await (const chunk of client.runs.stream(thread.thread_id, "whoami", {
  input: {},
  streamMode: "values",
})) {
  events.push(chunk.event);
}
const found = await client.threads.search({ limit: 100 });

let refused = null;
try {
  const stranger = new Client({ apiUrl, apiKey: "not-a-key", defaultHeaders: {} });
  await stranger.threads.get(thread.thread_id);
} catch (error) {
  refused = { status: error.status ?? null, message: String(error.message ?? error) };
}

console.log(
  JSON.stringify({
    thread,
    waited,
    events,
    threads: found.map((t) => t.thread_id),
    refused,
  }),
);
