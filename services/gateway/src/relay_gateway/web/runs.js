// Your runs, newest first (filtered by status), with links to each run's
// events and transcript (hash links: the run id, never the key).
import { api } from "./api.js";
import { RunFollower } from "./sse.js";

const $ = (id) => document.getElementById(id);

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href; a.textContent = text;
  return a;
}

// Each load is numbered: an answer to an older load (the unfiltered list
// asked for when the view opened, say) never replaces a newer one's.
let loads = 0;

export async function loadRuns() {
  const load = ++loads;
  const status = $("runs-status").value;
  const query = status ? `?limit=50&status=${encodeURIComponent(status)}` : "?limit=50";
  $("runs-error").textContent = "";
  try {
    const page = await api(`/v1/runs${query}`);
    if (load !== loads) return;
    const rows = page.runs.map((run) => {
      const tr = document.createElement("tr");
      tr.dataset.runId = run.run_id;
      const id = document.createElement("td");
      const span = document.createElement("span");
      span.className = "runid"; span.textContent = run.run_id; span.title = run.run_id;
      id.append(span);
      const links = document.createElement("td");
      links.append(link(`#run/${run.run_id}/events`, "events"), " ",
        link(`#run/${run.run_id}/transcript`, "transcript"));
      tr.append(id, cell(run.status), cell(new Date(run.created_at).toLocaleString()),
        cell(`$${run.cost_usd.toFixed(4)}`, "num"), links);
      return tr;
    });
    $("runs-table").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    $("runs-error").textContent = error.message;
  }
}

let detail = null;

export async function showRun(runId, what) {
  if (detail) detail.stop();
  $("run-detail").hidden = false;
  $("run-detail-title").textContent = `${what} of ${runId}`;
  const out = $("run-detail-body");
  out.textContent = "";
  try {
    if (what === "transcript") {
      const run = await api(`/v1/runs/${encodeURIComponent(runId)}`);
      const transcript = await api(run.transcript_url);
      out.textContent = transcript.messages.map((m) => `${m.role}: ${m.text}`).join("\n\n");
      return;
    }
    detail = new RunFollower({
      runId,
      onEvent: (type, data, id) => { out.textContent += `${id || "-"}  ${type}  ${JSON.stringify(data)}\n`; },
      onStatus: (text) => { out.textContent += `… ${text}\n`; },
    });
    await detail.follow();
  } catch (error) {
    out.textContent += `error: ${error.message}\n`;
  }
}

export function setupRuns() {
  $("runs-status").addEventListener("change", loadRuns);
  $("runs-refresh").addEventListener("click", loadRuns);
}
