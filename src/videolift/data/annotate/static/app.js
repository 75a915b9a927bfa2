// videolift annotate: rater UI (login, rating and pairwise tasks, own ratings). Plain JS, no build step.
// Every piece of data is inserted with textContent (never innerHTML): prompts and reasons are untrusted.
"use strict";

const DIMS = ["semantic_consistency", "motion_smoothness", "video_fidelity"];
const LABELS = ["Good", "Normal", "Bad"];
const CHOICES = [["A", "A better"], ["tie", "Tie"], ["B", "B better"]];
const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v !== false && v != null) el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid != null) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

const state = {
  token: localStorage.getItem("videolift-token") || "",
  me: null, guide: null, task: null, editing: false, result: {}, reasons: {}, logins: 0,
};

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : `${res.status} ${res.statusText}`);
  }
  return data;
}

let toastTimer = null;
function toast(message) {
  const el = $("toast");
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 2200);
}

function show(view) {
  for (const el of document.querySelectorAll(".view")) el.hidden = el.id !== `${view}-view`;
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("active", b.dataset.view === view);
  if (view !== "rate") for (const v of videos()) v.pause();
}

const title = (dim) => (state.guide ? state.guide.dimensions[dim].title : dim);

// ---- login ------------------------------------------------------------------------------------
async function login(token) {
  const attempt = ++state.logins; // a newer login (another link) supersedes this one
  state.token = token.trim();
  try {
    state.me = await api("GET", "/api/me");
  } catch (e) {
    if (attempt !== state.logins) return;
    localStorage.removeItem("videolift-token");
    $("login-error").textContent = e.message;
    show("login");
    return;
  }
  if (attempt !== state.logins) return;
  localStorage.setItem("videolift-token", state.token);
  state.guide = await api("GET", "/api/guideline");
  if (attempt !== state.logins) return;
  $("who").textContent = `${state.me.name} (${state.me.role})`;
  $("progress").textContent = "";
  $("logout").hidden = false;
  const nav = $("nav");
  nav.replaceChildren();
  nav.hidden = false;
  if (state.me.role === "admin") {
    window.Admin.start();
    return;
  }
  nav.append(
    h("button", { "data-view": "rate", onclick: () => loadNext() }, "Rate"),
    h("button", { "data-view": "mine", onclick: () => showMine() }, "My ratings"),
  );
  $("intro").textContent = state.guide.intro;
  $("keys-help").textContent =
    "Keys: 1-3 / 4-6 / 7-9 choose Good / Normal / Bad (or A / Tie / B) for the 1st / 2nd / 3rd dimension; " +
    "Space play/pause; ← → step one frame; Enter submit (Ctrl+Enter in a text box); S skip; Esc leave a text box.";
  await loadNext();
}

function logout() {
  localStorage.removeItem("videolift-token");
  location.reload();
}

async function refreshProgress() {
  const me = await api("GET", "/api/me");
  const p = me.progress;
  $("progress").textContent = `${p.done} done · ${p.skipped} skipped · ${p.left + p.open} left`;
}

// ---- a task -----------------------------------------------------------------------------------
async function loadNext() {
  try {
    const task = await api("GET", "/api/next");
    if (task) openTask(task, null);
    else show("done");
  } catch (e) {
    toast(e.message);
  }
  refreshProgress().catch(() => {});
}

function openTask(task, previous) {
  state.task = task;
  state.editing = Boolean(previous);
  state.version = previous ? previous.updated_at : null;  // sent back: an edit made elsewhere since is not overwritten
  state.result = {};
  state.reasons = {};
  if (previous) {
    for (const dim of DIMS) {
      const value = previous.ratings ? previous.ratings[dim] : previous.choices[dim];
      if (typeof value === "string") state.result[dim] = value;
      else if (value) [state.result[dim], state.reasons[dim]] = [value.label, value.reason];
    }
  }
  $("comment").value = previous ? previous.comment || "" : "";
  $("edit-banner").hidden = !state.editing;
  $("skip").hidden = state.editing;
  $("skip-panel").hidden = true;
  $("form-error").textContent = "";
  $("prompt").textContent = task.prompt;
  setVideos(task);
  renderForm();
  show("rate");
}

function renderForm() {
  const pair = state.task.kind === "pair";
  $("comment-box").hidden = !pair;
  const form = $("rating-form");
  form.replaceChildren();
  DIMS.forEach((dim, i) => {
    const guide = state.guide.dimensions[dim];
    const keys = `${3 * i + 1}–${3 * i + 3}`;
    const options = pair
      ? CHOICES.map(([value, text], j) =>
          h("button", { type: "button", class: "option choice", "data-value": value, onclick: () => choose(dim, value) },
            h("b", {}, text, h("kbd", {}, String(3 * i + j + 1))), h("small", {}, pairHint(value, guide.title))))
      : LABELS.map((label, j) =>
          h("button", { type: "button", class: `option ${label}`, "data-value": label, onclick: () => choose(dim, label) },
            h("b", {}, label, h("kbd", {}, String(3 * i + j + 1))), h("small", {}, guide.labels[label])));
    const card = h("div", { class: "dim", id: `dim-${dim}`, "data-dim": dim },
      h("h2", {}, guide.title, h("span", { class: "muted mono" }, `keys ${keys}`)),
      h("div", { class: "options" }, options));
    card.title = guide.question;
    if (!pair) {
      const reason = h("textarea", { rows: 2, id: `reason-${dim}`, placeholder: "Why? (required for Normal and Bad)" });
      reason.value = state.reasons[dim] || "";
      reason.addEventListener("input", () => {
        state.reasons[dim] = reason.value;
        card.classList.remove("missing");
        $("form-error").textContent = "";
      });
      card.append(reason);
    }
    form.append(card);
  });
  for (const dim of DIMS) paint(dim);
}

function pairHint(value, dimTitle) {
  if (value === "tie") return "Both equally good or bad";
  return `${value === "A" ? "Left" : "Right"} video is better on ${dimTitle.toLowerCase()}`;
}

function paint(dim) {
  const card = $(`dim-${dim}`);
  for (const b of card.querySelectorAll(".option")) b.classList.toggle("sel", b.dataset.value === state.result[dim]);
  const reason = $(`reason-${dim}`);
  if (reason) reason.classList.toggle("required", state.result[dim] === "Normal" || state.result[dim] === "Bad");
  card.classList.remove("missing");
  $("form-error").textContent = "";
}

function choose(dim, value) {
  state.result[dim] = value;
  paint(dim);
  const reason = $(`reason-${dim}`);
  if (reason && value !== "Good" && !reason.value.trim()) reason.focus();
}

async function submit() {
  const pair = state.task.kind === "pair";
  const missing = DIMS.filter((d) => !state.result[d]);
  const noReason = pair ? [] : DIMS.filter((d) => state.result[d] && state.result[d] !== "Good" && !(state.reasons[d] || "").trim());
  for (const d of [...missing, ...noReason]) $(`dim-${d}`).classList.add("missing");
  if (missing.length || noReason.length) {
    $("form-error").textContent = missing.length
      ? `Choose a rating for ${missing.map(title).join(", ")}.`
      : `Give a reason for ${noReason.map(title).join(", ")} (required for Normal and Bad).`;
    return;
  }
  const body = pair
    ? { task_id: state.task.task_id, choices: { ...state.result }, comment: $("comment").value }
    : { task_id: state.task.task_id, ratings: Object.fromEntries(DIMS.map((d) => [d, { label: state.result[d], reason: state.reasons[d] || "" }])) };
  try {
    if (state.editing) await api("PUT", `/api/annotations/${state.task.task_id}`, { ...body, updated_at: state.version });
    else await api("POST", "/api/annotations", body);
  } catch (e) {
    $("form-error").textContent = e.message;
    return;
  }
  toast(state.editing ? "Rating updated" : "Saved");
  if (state.editing) showMine();
  else loadNext();
}

// ---- skipping ---------------------------------------------------------------------------------
function openSkip() {
  const chips = $("skip-reasons");
  chips.replaceChildren(...state.guide.skip_reasons.map((r) =>
    h("button", { type: "button", onclick: (e) => {
      for (const b of chips.children) b.classList.remove("sel");
      e.currentTarget.classList.add("sel");
      $("skip-other").value = r;
    } }, r)));
  $("skip-other").value = "";
  $("skip-panel").hidden = false;
  $("skip-other").focus();
}

async function confirmSkip() {
  const reason = $("skip-other").value.trim();
  if (!reason) {
    toast("Give a reason to skip");
    return;
  }
  try {
    await api("POST", `/api/tasks/${state.task.task_id}/skip`, { reason });
  } catch (e) {
    toast(e.message);
    return;
  }
  toast("Skipped");
  loadNext();
}

// ---- video playback ---------------------------------------------------------------------------
const videos = () => [$("video-a"), $("video-b")].filter((v) => !v.closest("[hidden]"));

function setVideos(task) {
  const pair = task.kind === "pair";
  $("fig-b").hidden = !pair;
  $("cap-a").textContent = pair ? "A" : "";
  $("video-a").src = task.video_url;
  $("video-b").src = pair ? task.video_url_b : "";
  if (!pair) $("video-b").removeAttribute("src");
  for (const v of videos()) {
    v.playbackRate = Number($("speed").value);
    v.play().catch(() => {});
  }
  $("play").textContent = "Pause";
}

function togglePlay() {
  const vs = videos();
  const paused = vs[0].paused;
  for (const v of vs) (paused ? v.play() : v.pause());
  $("play").textContent = paused ? "Pause" : "Play";
}

function step(delta) {
  const fps = (state.task && state.task.fps) || 8;
  for (const v of videos()) {
    v.pause();
    const frame = Math.floor(v.currentTime * fps + 1e-3) + delta;
    const last = Math.max(0, Math.floor((v.duration || 0) * fps) - 1);
    v.currentTime = (Math.min(Math.max(frame, 0), last) + 0.5) / fps; // mid-frame: no rounding surprises
  }
  $("play").textContent = "Play";
}

function showFrame() {
  if (!state.task) return;
  const v = $("video-a");
  const fps = state.task.fps || 8;
  const total = state.task.num_frames || Math.round((v.duration || 0) * fps);
  $("frame").textContent = `frame ${Math.min(Math.floor(v.currentTime * fps + 1e-3) + 1, total)} / ${total}`;
}

// ---- own ratings ------------------------------------------------------------------------------
async function showMine() {
  show("mine");
  const list = $("mine-list");
  let items;
  try {
    items = await api("GET", "/api/annotations/mine");
  } catch (e) {
    toast(e.message);
    return;
  }
  list.replaceChildren();
  if (!items.length) list.append(h("p", { class: "muted" }, "No ratings yet."));
  for (const item of items) {
    const tags = [];
    if (item.status === "skipped") tags.push(h("span", { class: "tag" }, `skipped: ${item.skip_reason}`));
    for (const dim of DIMS) {
      if (item.ratings) {
        const r = item.ratings[dim];
        tags.push(h("span", { class: `tag ${r.label}`, title: r.reason }, `${title(dim)}: ${r.label}`));
      } else if (item.choices) {
        tags.push(h("span", { class: "tag" }, `${title(dim)}: ${item.choices[dim]}`));
      }
    }
    const reasons = item.ratings ? DIMS.map((d) => item.ratings[d].reason).filter(Boolean).join(" · ") : item.comment || "";
    list.append(h("div", { class: "item", "data-task": item.task_id },
      h("video", { src: item.video_url, muted: true, loop: true, preload: "metadata", onmouseenter: (e) => e.target.play(), onmouseleave: (e) => e.target.pause() }),
      h("div", { class: "text" }, h("div", {}, item.prompt), h("div", {}, tags), h("div", { class: "muted" }, reasons)),
      item.status === "done" ? h("button", { onclick: () => openTask(item, item) }, "Edit") : null));
  }
  refreshProgress().catch(() => {});
}

// ---- wiring -----------------------------------------------------------------------------------
function onKey(e) {
  const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(e.target.tagName);
  if (typing) {
    if (e.key === "Escape") e.target.blur();
    else if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("rate-view").hidden) { e.preventDefault(); submit(); }
    return;
  }
  if ($("rate-view").hidden || !state.task || e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[1-9]$/.test(e.key)) {
    e.preventDefault(); // choose() may focus a reason box: the digit must not land in it
    const n = Number(e.key) - 1;
    const dim = DIMS[Math.floor(n / 3)];
    choose(dim, state.task.kind === "pair" ? CHOICES[n % 3][0] : LABELS[n % 3]);
  } else if (e.key === " ") { e.preventDefault(); togglePlay(); }
  else if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
  else if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
  else if (e.key === "Enter") { e.preventDefault(); submit(); }
  else if ((e.key === "s" || e.key === "S") && !state.editing) { e.preventDefault(); openSkip(); }
  else return;
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("token-input").value); });
  $("logout").addEventListener("click", logout);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", openSkip);
  $("skip-confirm").addEventListener("click", confirmSkip);
  $("skip-cancel").addEventListener("click", () => { $("skip-panel").hidden = true; });
  $("skip-other").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); confirmSkip(); } });
  $("cancel-edit").addEventListener("click", showMine);
  $("play").addEventListener("click", togglePlay);
  $("step-back").addEventListener("click", () => step(-1));
  $("step-fwd").addEventListener("click", () => step(1));
  $("speed").addEventListener("change", () => { for (const v of videos()) v.playbackRate = Number($("speed").value); });
  for (const ev of ["timeupdate", "seeked", "loadedmetadata"]) $("video-a").addEventListener(ev, showFrame);
  document.addEventListener("keydown", onKey);

  // A login link `/#token=...` keeps the token out of server logs (fragments are never sent).
  const fromLink = () => {
    const match = location.hash.match(/^#token=(.+)$/);
    if (!match) return false;
    history.replaceState(null, "", location.pathname);
    login(decodeURIComponent(match[1]));
    return true;
  };
  window.addEventListener("hashchange", fromLink);
  if (!fromLink()) {
    if (state.token) login(state.token);
    else show("login");
  }
});
