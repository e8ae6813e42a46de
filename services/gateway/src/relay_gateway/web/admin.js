// Admin keys only: the kill switch and the live overview (pools, breakers,
// spend today), refreshed every two seconds while the view is open.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);
let timer = null;

function rows(table, items, cells) {
  $(table).tBodies[0].replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

function showSwitch(enabled) {
  $("kill-switch").setAttribute("aria-pressed", String(enabled));
  $("kill-switch").textContent = enabled ? "Turn the kill switch off" : "Turn the kill switch on";
  $("kill-switch-state").textContent = enabled
    ? "Kill switch ON: new runs are refused." : "Kill switch off.";
}

export async function refreshAdmin() {
  try {
    const view = await api("/v1/admin/overview");
    showSwitch(view.kill_switch);
    rows("pools-table", view.pools, (p) => [[p.pool], [String(p.in_flight), "num"],
      [String(p.capacity), "num"], [String(p.queue_lag), "num"]]);
    rows("breakers-table", view.breakers, (b) => [[b.model], [`${b.provider}/${b.upstream_model}`],
      [b.state, `state-${b.state}`]]);
    const s = view.spend_today;
    $("spend-today").textContent = s
      ? `Spend today (${s.day} UTC): $${s.cost_usd.toFixed(4)} · ${s.runs} runs finished, ${s.runs_in_flight} in flight`
      : "Spend today: unknown (state unavailable)";
    $("admin-error").textContent = "";
  } catch (error) {
    $("admin-error").textContent = error.message;
  }
}

export function watchAdmin(on) {
  clearInterval(timer);
  timer = null;
  if (on) { refreshAdmin(); timer = setInterval(refreshAdmin, 2000); }
}

export function setupAdmin() {
  $("kill-switch").addEventListener("click", async () => {
    const enabled = $("kill-switch").getAttribute("aria-pressed") !== "true";
    try {
      const state = await api("/v1/admin/kill-switch", { method: "PUT", body: { enabled } });
      showSwitch(state.enabled);
    } catch (error) {
      $("admin-error").textContent = error.message;
    }
  });
}
