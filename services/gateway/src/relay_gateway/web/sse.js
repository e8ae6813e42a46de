// A run's events over fetch() (EventSource cannot send the Authorization
// header): an SSE parser on the response body, and a follower that resumes
// after any drop with Last-Event-ID, a jittered backoff and a watchdog for a
// connection that went silent, and skips anything not after the last id.
import { ApiError, authHeaders, toError } from "./api.js";

const SILENT_MS = 45000; // the server sends a keep-alive every 15 s

export async function* parseSse(body, onChunk) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = { id: null, event: "message", data: "" };
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") data.push(val);
        else if (field === "event") message.event = val;
        else if (field === "id") message.id = val;
      }
      message.data = data.join("\n");
      if (data.length) yield message;
    }
  }
}

function streamId(id) {
  const [ms, seq = "0"] = String(id).split("-");
  return /^\d+$/.test(ms) && /^\d+$/.test(seq) ? [Number(ms), Number(seq)] : null;
}

function notAfter(id, last) {
  const a = streamId(id); const b = streamId(last);
  return a && b && (a[0] < b[0] || (a[0] === b[0] && a[1] <= b[1]));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class RunFollower {
  // opener(signal): the first response (a chat's POST); null: the events URL.
  constructor({ runId = null, eventsUrl = null, lastEventId = null, onEvent, onStatus }) {
    Object.assign(this, { runId, eventsUrl, lastEventId, onEvent, onStatus });
    this.conversationId = null;
    this.done = null;
    this.stopped = false;
    this.reconnects = 0;
    this.controller = null;
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async open(opener, signal) {
    if (!this.runId && opener) return opener(signal);
    if (!this.eventsUrl) {
      const run = await fetch(`/v1/runs/${encodeURIComponent(this.runId)}`,
        { headers: authHeaders(), signal });
      if (!run.ok) throw await toError(run);
      this.eventsUrl = (await run.json()).events_url;
    }
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    return fetch(this.eventsUrl, { headers, signal, cache: "no-store" });
  }

  learn(response) {
    if (this.runId) return;
    this.runId = response.headers.get("Relay-Run-Id");
    this.eventsUrl = response.headers.get("Relay-Events-Url");
    this.conversationId = response.headers.get("Relay-Conversation-Id");
  }

  accept(message) {
    if (this.done) return;
    if (message.id && this.lastEventId && notAfter(message.id, this.lastEventId)) return;
    if (message.id) this.lastEventId = message.id;
    let data = {};
    try { data = JSON.parse(message.data || "{}"); } catch (_) { data = { raw: message.data }; }
    if (message.event === "done") this.done = data;
    this.onEvent(message.event, data, message.id);
  }

  async connection(opener) {
    this.controller = new AbortController();
    let watchdog = null;
    const kick = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => this.controller.abort(), SILENT_MS);
    };
    try {
      kick();
      const response = await this.open(opener, this.controller.signal);
      if (!response.ok) throw await toError(response);
      this.learn(response);
      if (this.dropped) {
        this.reconnects += 1;
        this.dropped = null;
        this.onStatus(`reconnected, resuming after event ${this.lastEventId}`);
      }
      for await (const message of parseSse(response.body, kick)) {
        this.accept(message);
        if (this.done || this.stopped) return;
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  async follow(opener = null) {
    let failures = 0;
    this.dropped = null;
    while (!this.done && !this.stopped) {
      try {
        await this.connection(opener);
        if (this.done || this.stopped) return this.done;
        this.dropped = "the stream ended early";
        failures = 0;
      } catch (error) {
        if (this.stopped) return null;
        if (error instanceof ApiError && !error.retryable) throw error;
        this.dropped = this.dropped || String(error.message || error);
        failures += 1;
        const ceiling = Math.min(3000, 200 * 2 ** (failures - 1));
        const waitMs = Math.max(Math.random() * ceiling, (error.retryAfterS || 0) * 1000);
        this.onStatus(`connection lost (${this.dropped}); reconnecting…`);
        await sleep(waitMs);
      }
    }
    return this.done;
  }
}
