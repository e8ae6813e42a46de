// The chat playground: an interactive run streamed into the page. Tokens are
// kept per step, so a `step_retry` or `resumed` removes exactly the text it
// voids; tool calls are collapsible cards; after a `resync` the answer is
// replaced by the run's transcript. Cancel stops the run; Detach stops
// watching it (it goes on: see Runs).
import { api, authHeaders, newIdempotencyKey } from "./api.js";
import { RunFollower } from "./sse.js";

const $ = (id) => document.getElementById(id);
let follower = null;
let conversationId = null;

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function setStatus(text) { $("chat-status").textContent = text; }

class Answer {
  constructor(root) {
    this.root = root;
    this.cards = new Map();
    this.input = 0; this.output = 0; this.cost = 0;
    root.replaceChildren();
  }

  stepSpan(step) {
    const spans = this.root.querySelectorAll(`span.text[data-step="${step}"]`);
    const last = spans[spans.length - 1];
    if (last && last === this.root.lastElementChild) return last;
    const span = el("span", { class: "text", "data-step": String(step) });
    this.root.append(span);
    return span;
  }

  drop(fromStep, note) {
    for (const span of this.root.querySelectorAll("span.text")) {
      if (Number(span.dataset.step) >= fromStep) span.remove();
    }
    this.notice(note);
  }

  notice(text, kind = "notice") { this.root.append(el("span", { class: kind }, text)); }

  toolStart(data) {
    const card = el("details", { class: "tool", "data-call": data.call_id });
    const summary = el("summary", {}, `⚙ ${data.name} — running…`);
    card.append(summary, el("pre", {}, JSON.stringify(data.args, null, 2)));
    this.cards.set(data.call_id, { card, summary, name: data.name });
    this.root.append(card);
  }

  toolEnd(data) {
    const entry = this.cards.get(data.call_id);
    if (!entry) return;
    entry.summary.textContent = `${data.ok ? "✓" : "✗"} ${entry.name}${data.ok ? "" : " failed"}`;
    if (!data.ok) {
      entry.card.classList.add("failed");
      entry.card.append(el("pre", {}, data.error || "error"));
    }
  }

  replaceText(text) {
    for (const span of this.root.querySelectorAll("span.text")) span.remove();
    this.root.append(el("span", { class: "text", "data-step": "transcript" }, text));
  }

  get text() {
    return [...this.root.querySelectorAll("span.text")].map((s) => s.textContent).join("");
  }

  costLine(done) {
    const cost = done ? done.cost_usd : this.cost;
    return `$${Number(cost).toFixed(4)} · ${this.input} in / ${this.output} out tokens`;
  }
}

function onEvent(answer, run) {
  return (type, data) => {
    if (type === "token") answer.stepSpan(data.step).append(data.text);
    else if (type === "tool_start") answer.toolStart(data);
    else if (type === "tool_end") answer.toolEnd(data);
    else if (type === "step_retry") answer.drop(data.step, `↻ step ${data.step} again on ${data.model} (${data.reason})`);
    else if (type === "resumed") answer.drop(data.from_step, `↻ resumed by attempt ${data.attempt}`);
    else if (type === "status") setStatus(data.message);
    else if (type === "start") setStatus(`running (attempt ${data.attempt})`);
    else if (type === "error") answer.notice(`✗ ${data.message}`, "notice error");
    else if (type === "resync") run.resync = data;
    else if (type === "usage") {
      answer.input += data.input_tokens; answer.output += data.output_tokens;
      answer.cost += data.cost_usd;
    }
    $("answer").dataset.lastEventId = run.follower.lastEventId || "";
    $("chat-cost").textContent = answer.costLine(null);
  };
}

function busy(on) {
  $("send").disabled = on; $("cancel").disabled = !on; $("detach").disabled = !on;
  $("answer").setAttribute("aria-busy", String(on));
}

async function send(event) {
  event.preventDefault();
  const message = $("message").value.trim();
  if (!message || follower) return;
  const answer = new Answer($("answer"));
  const body = { message, detach: true };
  if (conversationId) body.conversation_id = conversationId;
  if ($("model").value.trim()) body.model = $("model").value.trim();
  const key = newIdempotencyKey();
  const run = { resync: null, follower: null };
  follower = new RunFollower({ onEvent: onEvent(answer, run), onStatus: setStatus });
  run.follower = follower;
  const opener = (signal) => fetch("/v1/chat/stream", {
    method: "POST", signal, cache: "no-store", body: JSON.stringify(body),
    headers: authHeaders({ "Content-Type": "application/json", "Idempotency-Key": key }),
  });
  busy(true);
  setStatus("sending…");
  try {
    const done = await follower.follow(opener);
    conversationId = follower.conversationId || conversationId;
    $("answer").dataset.runId = follower.runId || "";
    if (done && run.resync) {
      const transcript = await api(run.resync.transcript_url);
      answer.replaceText(transcript.messages.filter((m) => m.role === "assistant"
        && m.run_id === follower.runId).map((m) => m.text).join(""));
    }
    if (done) {
      setStatus(`done: ${done.status}${follower.reconnects ? ` · ${follower.reconnects} reconnect(s)` : ""}`);
      $("chat-cost").textContent = answer.costLine(done);
      $("message").value = "";
    }
  } catch (error) {
    setStatus(`error: ${error.message}`);
  } finally {
    $("answer").dataset.runId = follower.runId || "";
    $("answer").dataset.done = follower.done ? follower.done.status : "";
    follower = null;
    busy(false);
  }
}

async function cancel() {
  if (!follower || !follower.runId) return;
  setStatus("cancelling…");
  try { await api(`/v1/runs/${encodeURIComponent(follower.runId)}/cancel`, { method: "POST" }); }
  catch (error) { setStatus(`error: ${error.message}`); }
}

function detach() {
  if (!follower) return;
  const runId = follower.runId;
  follower.stop();
  setStatus(`detached: run ${runId} goes on (see Runs)`);
}

// Leaving the page abandons the answer: cancel the run as a disconnect would
// (the chat asked the server to detach so that a network blip cannot).
function abandon() {
  if (!follower || !follower.runId || follower.stopped) return;
  fetch(`/v1/runs/${encodeURIComponent(follower.runId)}/cancel`,
    { method: "POST", keepalive: true, headers: authHeaders() });
}

export function setupChat() {
  window.addEventListener("pagehide", abandon);
  $("chat-form").addEventListener("submit", send);
  $("cancel").addEventListener("click", cancel);
  $("detach").addEventListener("click", detach);
  $("new-conversation").addEventListener("click", () => {
    conversationId = null;
    $("answer").replaceChildren();
    setStatus("a new conversation");
  });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("chat-form").requestSubmit();
  });
}
