// The console's shell: sign in and out, and the views (#chat, #runs, #admin,
// #run/<id>/events|transcript). The hash never carries the key.
import { ApiError, api, session } from "./api.js";
import { refreshAdmin, setupAdmin, watchAdmin } from "./admin.js";
import { setupChat } from "./chat.js";
import { loadRuns, setupRuns, showRun } from "./runs.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["signin", "chat", "runs", "admin"];
let isAdmin = false;

function show(view) {
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  watchAdmin(view === "admin" && isAdmin);
}

function route() {
  if (!session.key) { show("signin"); $("nav").hidden = true; return; }
  $("nav").hidden = false;
  const hash = location.hash.slice(1);
  const detail = hash.match(/^run\/([A-Za-z0-9_-]+)\/(events|transcript)$/);
  if (detail) { show("runs"); loadRuns(); showRun(detail[1], detail[2]); return; }
  if (hash === "runs") { show("runs"); loadRuns(); return; }
  if (hash === "admin" && isAdmin) { show("admin"); return; }
  show("chat");
}

async function detectAdmin() {
  try { await api("/v1/admin/kill-switch"); isAdmin = true; }
  catch (error) { isAdmin = false; if (!(error instanceof ApiError) || error.status !== 403) throw error; }
  $("nav-admin").hidden = !isAdmin;
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("signin-error").textContent = "";
  session.key = key;
  try {
    await api("/v1/runs?limit=1");
    await detectAdmin();
  } catch (error) {
    session.key = null;
    $("signin-error").textContent = error.status === 401
      ? "That key was not accepted (invalid or revoked)." : `Cannot sign in: ${error.message}`;
    return;
  }
  $("api-key").value = "";
  route();
  $("main").focus();
}

function signOut() {
  session.key = null;
  isAdmin = false;
  $("nav-admin").hidden = true;
  route();
}

setupChat();
setupRuns();
setupAdmin();
$("signin-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
if (session.key) detectAdmin().catch(() => {}).finally(route); else route();
export { refreshAdmin };
