// spoold's live dashboard: polls the daemon's own API and rebuilds each panel.
// Every value that comes from the daemon (a job's id, type, error, a task's name...) goes
// into the page as text (textContent, text nodes), never as HTML, so a job whose fields
// hold markup or script shows that markup as characters.
"use strict";

const POLL_MS = pollMs(); // every 2 s, or as the address says: /#every=10 (0.5 s to 60 s)
const LIST_LIMIT = 10;
const TOKEN_KEY = "spoold-token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  tokenNeeded: false, // the daemon answered 401: it has a token, and we must send it
  skewMs: 0, // browser clock minus the daemon's, from the snapshot's updatedAt
  offline: null, // why the last poll failed, while it does
  timer: null,
  busy: false, // a poll is under way
  again: false, // and another was asked for meanwhile
  lookedUp: null, // the job id asked for in "Find a job"
};

function pollMs() {
  const asked = Number(new URLSearchParams(location.hash.slice(1)).get("every"));
  return asked ? Math.min(Math.max(asked, 0.5), 60) * 1000 : 2000;
}

// ----- small DOM helpers ------------------------------------------------------------------

function $(id) {
  return document.getElementById(id);
}

/** An element with attributes and children; string children become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table: header cells, then rows of cells (a cell is text, a Node, or {text, cls}).
 * Each cell carries its column's name, which a phone's narrow layout shows beside it. */
function fillTable(table, header, rows, emptyText) {
  const names = header.map((h) => (typeof h === "string" ? h : h.text));
  const head = el("tr", {},
    header.map((h, i) => el("th", { scope: "col", class: h.cls }, names[i])));
  const body = rows.length
    ? rows.map((row) => el("tr", {}, row.map((value, i) => cell(value, names[i]))))
    : [el("tr", {}, el("td", { colspan: header.length, class: "empty" }, emptyText))];
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

function cell(value, label) {
  const attrs = { "data-label": label || null };
  if (value instanceof Node) {
    return el("td", { ...attrs, class: value.tagName === "BUTTON" ? "action" : null }, value);
  }
  if (value !== null && typeof value === "object") {
    return el("td", { ...attrs, class: value.cls }, value.text ?? "");
  }
  return el("td", attrs, value ?? "");
}

// ----- time -------------------------------------------------------------------------------

function serverNow() {
  return Date.now() - state.skewMs;
}

/** Seconds as '4 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'. */
function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function since(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? "" : duration((serverNow() - t) / 1000);
}

/** An ISO time as the browser's local time, to the second. */
function local(iso) {
  const t = Date.parse(iso || "");
  return Number.isNaN(t) ? "—" : new Date(t).toLocaleString();
}

/** An ISO time with its offset, shown as written: the wall clock of the zone it was made in. */
function asWritten(iso, zone) {
  if (!iso) return "—";
  return `${iso.slice(0, 16).replace("T", " ")} ${zone || ""}`.trim();
}

// ----- talking to the daemon --------------------------------------------------------------

class ApiRefused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const reply = await fetch(path, { method, headers, cache: "no-store" });
  let data = null;
  try {
    data = await reply.json();
  } catch (e) {
    data = null;
  }
  if (reply.status === 401) {
    const refused = Boolean(state.token);
    state.token = null;
    state.tokenNeeded = true;
    sessionStorage.removeItem(TOKEN_KEY);
    askToken(refused ? "The daemon refused that token: enter it again." : null);
    blockActions();
  }
  if (!reply.ok) {
    const why = data && typeof data.error === "string" ? data.error : `HTTP ${reply.status}`;
    throw new ApiRefused(reply.status, why);
  }
  return data;
}

function askToken(why) {
  const form = $("token-form");
  if (why) $("token-why").textContent = why;
  if (form.hidden) {
    form.hidden = false;
    $("token-input").focus();
  }
}

function useToken(event) {
  event.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  state.token = value;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  $("token-form").hidden = true;
  refresh();
}

/** Why the buttons that change things are off right now, or null when they may be used. */
function whyDisabled() {
  if (state.tokenNeeded && !state.token) return "this daemon needs its API token: enter it above.";
  if (state.offline) return `the daemon does not answer (${state.offline}).`;
  return null;
}

/** Turn off every button that changes something, saying why, on it and on the page. */
function blockActions() {
  const why = whyDisabled();
  for (const button of document.querySelectorAll("button[data-key]")) {
    button.disabled = true;
    button.title = `Off: ${why}`;
  }
  showActionsNote();
}

function showActionsNote() {
  const why = whyDisabled();
  const note = $("actions-note");
  note.classList.toggle("failed", Boolean(why));
  if (why) note.textContent = `✗ Retry, Cancel and Run now are off: ${why}`;
  else if (state.token) note.textContent = "";
  else {
    note.textContent = "No API token is set on this daemon: whoever can reach it can use"
      + " these buttons (set http.token).";
  }
}

/** A button that changes something; `key` names it across refreshes, which rebuild the
 * tables, so that keyboard focus stays on it. `blocked`: why it is off, besides the reasons
 * that turn off every button. */
function actionButton(label, title, key, action, blocked = null) {
  const why = whyDisabled() || blocked;
  return el("button", {
    type: "button", disabled: Boolean(why), title: why ? `Off: ${why}` : title,
    "aria-label": title, "data-key": key, onclick: (event) => act(event.currentTarget, action),
  }, label);
}

function keepFocus(render) {
  const key = document.activeElement?.dataset?.key;
  render();
  if (key) document.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

async function act(button, action) {
  button.disabled = true;
  try {
    say(await action());
  } catch (e) {
    say(`Not done: ${e.message}`);
  } finally {
    refresh(); // rebuilds the button, enabled unless something now blocks it
  }
}

function say(text) {
  $("message").textContent = text;
}

function retryButton(id, key) {
  return actionButton("Retry", `Retry job ${id}`, `${key} ${id}`, async () => {
    const r = await api("POST", `/jobs/${encodeURIComponent(id)}/retry`);
    return `Job ${id} retried: back in ${r.folder}/.`;
  });
}

/** Cancel a pending job (it moves to failed/ at once) or ask a running one to stop (its
 * record says cancelled once it has); `asked`: a running job already asked to stop. */
function cancelButton(id, key, running = false, asked = false) {
  const title = running ? `Cancel job ${id} (it is asked to stop)`
    : `Cancel job ${id} (it moves to failed/)`;
  return actionButton("Cancel", title, `${key} ${id}`, async () => {
    const r = await api("DELETE", `/jobs/${encodeURIComponent(id)}`);
    return r.status === "cancelling"
      ? `Job ${id} asked to stop: it stops at its next step, then moves to failed/.`
      : `Job ${id} cancelled: moved to failed/.`;
  }, asked ? "it was asked to stop and has not yet." : null);
}

const runNow = (name) => async () => {
  const r = await api("POST", `/scheduler/${encodeURIComponent(name)}/run`);
  return r.jobId ? `Task ${name} enqueued as job ${r.jobId}.` : `Task ${name} enqueued.`;
};

// ----- panels -----------------------------------------------------------------------------

function showAbout(s) {
  $("node").textContent = s.node ? `on ${s.node}` : "";
  const up = typeof s.uptimeSeconds === "number" ? duration(s.uptimeSeconds) : "?";
  $("about").textContent =
    `version ${s.version ?? "?"} · up ${up} (since ${local(s.startedAt)}) · pid ${s.pid ?? "?"}` +
    ` · ${s.worker?.concurrency ?? "?"} workers`;
}

function showAlerts(s) {
  const alerts = [];
  if (s.config?.error) {
    alerts.push(el("div", { class: "alert", id: "config-error", role: "alert" },
      el("h2", {}, "⚠ Config error: the last edit did not load"),
      el("p", {}, "The daemon keeps running with the last good config"
        + ` (${s.config.path ?? "built-in defaults"}). Fix the file and save it again.`),
      el("pre", {}, s.config.error)));
  }
  if (s.storage?.error) {
    alerts.push(el("div", { class: "alert", id: "storage-error", role: "alert" },
      el("h2", {}, "⚠ Storage problem: the spool cannot be written"),
      el("p", {}, s.storage.since ? `Since ${local(s.storage.since)} (${since(s.storage.since)}).`
        + " spoold tries again; free space or fix the spool's permissions." : null),
      el("pre", {}, s.storage.error)));
  }
  $("alerts").replaceChildren(...alerts);
}

function showQueue(q, jobs) {
  const pending = q.pending || {};
  const count = (n) => ({ text: n ?? "?", cls: "num" });
  const priorities = ["critical", "high", "normal", "low"];
  fillTable($("priority-table"), ["pending, by priority", { text: "jobs", cls: "num" }],
    [...priorities.map((p) => [p, count(pending[p])]), ["all", count(pending.total)]], "");
  fillTable($("folder-table"), ["folder", { text: "jobs", cls: "num" }],
    [["pending/", count(pending.total)], ["running/", count(q.running)],
      ["completed/", count(q.completed)], ["failed/", count(q.failed)]], "");
  $("oldest-due").textContent = jobs.oldestDueAt
    ? `${since(jobs.oldestDueAt)} (due since ${local(jobs.oldestDueAt)})` : "none due";
}

function showRunning(jobs) {
  const rows = (jobs || []).map((j) => [
    { text: j.id, cls: "id" }, j.type, j.priority, { text: j.attempts, cls: "num" },
    { text: since(j.startedAt), cls: "num" }, progressText(j),
    cancelButton(j.id, "stop", true, j.cancelling),
  ]);
  fillTable($("running-table"), ["id", "type", "priority", { text: "attempt", cls: "num" },
    { text: "running for", cls: "num" }, "progress", ""], rows, "No job is running.");
}

/** What a running job last said of its progress (its own words: shown as text only). */
function progressText(j) {
  const p = j.progress;
  const told = p ? `${Math.round(p.fraction * 100)}%${p.text ? ` · ${p.text}` : ""}` : "";
  return j.cancelling ? `cancelling…${told ? ` (${told})` : ""}` : told;
}

function showPending(jobs) {
  const rows = (jobs || []).map((j) => [
    { text: j.id, cls: "id" }, j.priority,
    j.dueAt ? `at ${local(j.dueAt)}` : `due, waiting ${since(j.acceptedAt)}`,
    cancelButton(j.id, "cancel"),
  ]);
  fillTable($("pending-table"), ["id", "priority", "runs", ""], rows, "Nothing is pending.");
}

function showFailed(jobs) {
  const rows = jobs.map((j) => [
    { text: "✗ failed", cls: "failed" }, { text: j.id, cls: "id" }, j.type,
    { text: j.attempts, cls: "num" }, local(j.completedAt), { text: j.error ?? "", cls: "error" },
    retryButton(j.id, "retry"),
  ]);
  fillTable($("failed-table"), ["status", "id", "type", { text: "attempts", cls: "num" },
    "failed at", "error", ""], rows, "No failed jobs.");
}

function showCompleted(jobs) {
  const rows = jobs.map((j) => [
    { text: "✓ completed", cls: "completed" }, { text: j.id, cls: "id" }, j.type,
    { text: j.attempts, cls: "num" }, local(j.completedAt),
    { text: typeof j.durationMs === "number" ? `${j.durationMs} ms` : "", cls: "num" },
  ]);
  fillTable($("completed-table"), ["status", "id", "type", { text: "attempts", cls: "num" },
    "completed at", { text: "took", cls: "num" }], rows, "No completed jobs yet.");
}

function lastResult(t) {
  if (t.isRunning) return { text: "▶ running", cls: "" };
  if (t.lastResult === "failed") {
    return { text: `✗ failed: ${t.lastError ?? ""}`, cls: "failed error" };
  }
  if (t.lastResult === "completed") return { text: "✓ completed", cls: "completed" };
  return { text: "— not run yet", cls: "" };
}

function showTasks(scheduler) {
  const tasks = (scheduler && scheduler.tasks) || [];
  const rows = tasks.map((t) => [
    { text: t.name, cls: "id" }, el("code", {}, t.schedule ?? ""),
    el("span", {}, asWritten(t.nextRun, t.timezone), el("br"),
      el("span", { class: "muted" }, `yours: ${local(t.nextRun)}`)),
    asWritten(t.lastRun, t.timezone),
    lastResult(t),
    { text: `${t.runCount ?? 0} / ${t.errorCount ?? 0} / ${t.skippedCount ?? 0}`, cls: "num" },
    actionButton("Run now", `Run task ${t.name} now`, `run ${t.name}`, runNow(t.name),
      scheduler.isRunning ? null : "the scheduler is not running (the daemon stops)."),
  ]);
  fillTable($("tasks-table"), ["task", "schedule", "next run", "last run", "last result",
    { text: "runs / errors / skips", cls: "num" }, ""], rows, "No scheduled tasks.");
}

/** Completed (solid) and failed (outlined, stacked on top) jobs per minute as SVG bars, one
 * minute a unit wide; the labels are HTML around it, so the SVG may stretch to any width. */
function showChart(minutes) {
  const peak = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const h = (v) => (100 * v) / peak;
  const bars = [];
  minutes.forEach((m, i) => {
    const said = `${local(m.minute)}: ${m.completed} completed, ${m.failed} failed`;
    const title = svg("title", {}, said);
    const attrs = { x: i + 0.1, width: 0.8 };
    if (m.completed) {
      bars.push(svg("rect", { ...attrs, class: "bar-completed", y: 100 - h(m.completed),
        height: h(m.completed) }, title.cloneNode(true)));
    }
    if (m.failed) {
      bars.push(svg("rect", { ...attrs, class: "bar-failed", y: 100 - h(m.completed + m.failed),
        height: h(m.failed), "vector-effect": "non-scaling-stroke" }, title));
    }
  });
  const done = minutes.reduce((a, m) => a + m.completed, 0);
  const failed = minutes.reduce((a, m) => a + m.failed, 0);
  const summary = `Last hour: ${done} completed, ${failed} failed.`;
  const plot = svg("svg", { viewBox: `0 0 ${minutes.length || 60} 100`,
    preserveAspectRatio: "none", role: "img", "aria-label": summary }, ...bars);
  $("chart-summary").textContent = summary;
  $("chart").replaceChildren(
    el("div", { class: "legend" },
      el("span", {}, el("span", { class: "swatch swatch-completed" }), "completed (solid)"),
      el("span", {}, el("span", { class: "swatch swatch-failed" }), "failed (outlined)")),
    el("div", { class: "plot" },
      el("div", { class: "y-labels" }, el("span", {}, peak), el("span", {}, "0")), plot),
    el("div", { class: "x-labels" }, el("span", {}, "60 min ago"), el("span", {}, "now")));
}

// ----- find a job -------------------------------------------------------------------------

function findJob(event) {
  event.preventDefault();
  state.lookedUp = $("find-input").value.trim() || null;
  if (state.lookedUp) lookUp(state.lookedUp);
}

/** Where a job is and its record, with Retry or Cancel where they apply; looked up again
 * at every poll, so that the panel follows the job. */
async function lookUp(id) {
  let shown;
  try {
    const r = await api("GET", `/jobs/${encodeURIComponent(id)}`);
    const buttons = [];
    if (r.folder === "failed") buttons.push(retryButton(r.id, "found retry"));
    if (r.folder === "pending") buttons.push(cancelButton(r.id, "found cancel"));
    if (r.folder === "running") buttons.push(cancelButton(r.id, "found stop", true));
    const failed = r.folder === "failed" ? el("span", { class: "failed" }, "✗ ") : null;
    shown = [
      el("p", {}, failed, "Job ", el("strong", {}, r.id), ` is in ${r.folder}/. `,
        r.progress ? `Progress: ${progressText(r)}. ` : "", ...buttons),
      el("pre", {}, JSON.stringify(r.record, null, 2)),
    ];
  } catch (e) {
    shown = [el("p", { class: "failed" }, `✗ ${e.message}`)];
  }
  if (id === state.lookedUp) keepFocus(() => $("found").replaceChildren(...shown));
}

// ----- the loop ---------------------------------------------------------------------------

/** One poll of every panel; a call while one is under way asks for another after it. */
async function refresh() {
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  clearTimeout(state.timer);
  try {
    const [status, history, completed, failed] = await Promise.all([
      api("GET", "/status"), api("GET", "/jobs/history"),
      api("GET", `/jobs/completed?limit=${LIST_LIMIT}`),
      api("GET", `/jobs/failed?limit=${LIST_LIMIT}`),
    ]);
    state.skewMs = Date.now() - (Date.parse(status.updatedAt) || Date.now());
    state.offline = null;
    keepFocus(() => {
      showAbout(status);
      showAlerts(status);
      showQueue(status.queue || {}, status.jobs || {});
      showChart(history.minutes || []);
      showRunning(status.jobs?.running);
      showPending(status.jobs?.nextPending);
      showFailed(failed.jobs || []);
      showCompleted(completed.jobs || []);
      showTasks(status.scheduler);
    });
    showActionsNote();
    if (state.lookedUp) await lookUp(state.lookedUp);
    $("refreshed").textContent = new Date().toLocaleTimeString();
    $("about").classList.remove("failed");
  } catch (e) {
    if (!(e instanceof ApiRefused && e.status === 401)) {
      state.offline = e.message;
      $("about").textContent = `✗ The daemon does not answer (${e.message}); showing what it`
        + " said last, trying again.";
      $("about").classList.add("failed");
      blockActions();
    }
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      refresh();
    } else {
      state.timer = setTimeout(refresh, POLL_MS);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", useToken);
  $("find-form").addEventListener("submit", findJob);
  refresh();
});
