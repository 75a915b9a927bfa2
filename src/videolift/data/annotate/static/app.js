// videolift annotate: rater UI (login, rating and pairwise tasks, own ratings). Plain JS, no build step.
// Every piece of data is inserted with textContent (never innerHTML): prompts and reasons are untrusted.
"use strict";

const DIMS = ["semantic_consistency", "motion_smoothness", "video_fidelity"];
const LABELS = ["Good", "Normal", "Bad"];
const CHOICES = [["A", "A better"], ["tie", "Tie"], ["B", "B better"]];
const BROKEN = "Video does not play"; // the skip reason offered when a video fails to load
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
  me: null, guide: null, task: null, editing: false, result: {}, reasons: {}, logins: 0, busy: false, retry: null, views: 0,
};

async function api(method, path, body) {
  return answer(await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

// A response's JSON (or text), or an Error with the server's detail; an answer that is not JSON (a
// proxy's own error page) by its status.
async function answer(res) {
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

// Errors that leave the page without a task stay on screen with a Retry (a toast vanished after 2 s and
// left a blank page).
function showAlert(message, retry) {
  $("alert-text").textContent = message;
  $("alert-retry").hidden = !retry;
  state.retry = retry || null;
  $("alert").hidden = false;
}

function clearAlert() {
  $("alert").hidden = true;
  state.retry = null;
}

function show(view) {
  state.views += 1;
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
  try {
    state.guide = await api("GET", "/api/guideline");
  } catch (e) {
    if (attempt === state.logins) showAlert(`Could not load the guideline: ${e.message}`, () => login(state.token));
    return;
  }
  if (attempt !== state.logins) return;
  clearAlert();
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
    "Space play/pause; ← → step one frame; Enter submit (Ctrl+Enter in a text box); S skip (Enter skips, Esc closes); " +
    "Esc leave a text box. On a focused button, Enter and Space press that button.";
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
// One request at a time: a second Enter while a rating was being saved, or while the next task loaded,
// posted the old task again (its 409 then showed on the next task).
async function exclusive(work) {
  if (state.busy) return;
  state.busy = true;
  $("submit").disabled = $("skip-confirm").disabled = true;
  try {
    await work();
  } finally {
    state.busy = false;
    $("submit").disabled = $("skip-confirm").disabled = false;
  }
}

const loadNext = () => exclusive(() => nextTask(state.views));

// `views`: state.views when the rater asked (the click, or the save or skip before this load). A rater
// who opened My ratings since is not pulled back from there.
async function nextTask(views) {
  try {
    const task = await api("GET", "/api/next");
    if (state.views !== views) return;
    clearAlert();
    if (task) openTask(task, null);
    else show("done");
  } catch (e) {
    if (state.views !== views) return;
    show(null); // nothing to rate (the task on screen may be saved already): only the alert and its Retry
    showAlert(`Could not load the next task: ${e.message}`, loadNext);
  }
  refreshProgress().catch(() => {});
}

// A draft of the open task survives a reload (the same task comes back); it is dropped once sent.
// Keyed by the video's URL too (a random key per video): a project created again reuses task ids.
const draftKey = (task) => `videolift-draft-${task.task_id}-${task.video_url}`;

function saveDraft() {
  if (!state.task || state.editing) return;
  const draft = { result: state.result, reasons: state.reasons, comment: $("comment").value };
  sessionStorage.setItem(draftKey(state.task), JSON.stringify(draft));
}

function readDraft(task) {
  try {
    return JSON.parse(sessionStorage.getItem(draftKey(task))) || {};
  } catch {
    return {};
  }
}

function openTask(task, previous) {
  state.task = task;
  state.editing = Boolean(previous);
  state.version = previous ? previous.updated_at : null;  // sent back: an edit made elsewhere since is not overwritten
  const draft = previous ? {} : readDraft(task);
  state.result = draft.result || {};
  state.reasons = draft.reasons || {};
  if (previous) {
    for (const dim of DIMS) {
      const value = previous.ratings ? previous.ratings[dim] : previous.choices[dim];
      if (typeof value === "string") state.result[dim] = value;
      else if (value) [state.result[dim], state.reasons[dim]] = [value.label, value.reason];
    }
  }
  $("comment").value = previous ? previous.comment || "" : draft.comment || "";
  $("edit-banner").hidden = !state.editing;
  $("skip").hidden = state.editing;
  $("skip-panel").hidden = true;
  $("form-error").textContent = "";
  $("prompt").textContent = task.prompt;
  show("rate"); // first: setVideos starts only the videos of the shown view (after a login, a reload or
  // Edit the view was still hidden, and the video stood still under a "Pause" button)
  setVideos(task);
  renderForm();
  // A screen reader announces the new task and the keys keep working from the prompt. Scrolled to the top:
  // after Submit at the bottom of a phone page, focusing the prompt alone left the video under the header.
  $("prompt").focus({ preventScroll: true });
  window.scrollTo(0, 0);
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
          h("button", { type: "button", class: "option choice", "data-value": value, "aria-pressed": "false", onclick: (e) => clicked(e, dim, value) },
            h("b", {}, text, h("kbd", {}, String(3 * i + j + 1))), h("small", {}, pairHint(value, guide.title))))
      : LABELS.map((label, j) =>
          h("button", { type: "button", class: `option ${label}`, "data-value": label, "aria-pressed": "false", onclick: (e) => clicked(e, dim, label) },
            h("b", {}, label, h("kbd", {}, String(3 * i + j + 1))), h("small", {}, guide.labels[label])));
    const card = h("div", { class: "dim", id: `dim-${dim}`, "data-dim": dim, role: "group", "aria-labelledby": `title-${dim}` },
      h("h2", {}, h("span", { id: `title-${dim}` }, guide.title), h("span", { class: "muted mono" }, `keys ${keys}`)),
      h("div", { class: "options" }, options));
    card.title = guide.question;
    if (!pair) {
      const reason = h("textarea", {
        rows: 2, id: `reason-${dim}`, placeholder: "Why? (required for Normal and Bad)", "aria-label": `Reason for ${guide.title}`,
      });
      reason.value = state.reasons[dim] || "";
      reason.addEventListener("input", () => {
        state.reasons[dim] = reason.value;
        saveDraft();
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
  for (const b of card.querySelectorAll(".option")) {
    const on = b.dataset.value === state.result[dim];
    b.classList.toggle("sel", on);
    b.setAttribute("aria-pressed", String(on)); // the selection is not only a colour
  }
  const reason = $(`reason-${dim}`);
  if (reason) reason.classList.toggle("required", state.result[dim] === "Normal" || state.result[dim] === "Bad");
  card.classList.remove("missing");
  $("form-error").textContent = "";
}

// A mouse click leaves focus on the option, where Enter presses it again rather than submitting: a click
// (not a key: its detail is 0) lets focus go, so Enter submits as after a digit key.
function clicked(e, dim, value) {
  choose(dim, value);
  if (e.detail > 0 && document.activeElement === e.currentTarget) e.currentTarget.blur();
}

function choose(dim, value) {
  state.result[dim] = value;
  saveDraft();
  paint(dim);
  const reason = $(`reason-${dim}`);
  if (reason && value !== "Good" && !reason.value.trim()) reason.focus();
}

const submit = () => exclusive(async () => {
  const task = state.task;
  const views = state.views;
  const editing = state.editing;
  const pair = task.kind === "pair";
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
    ? { task_id: task.task_id, choices: { ...state.result }, comment: $("comment").value }
    : { task_id: task.task_id, ratings: Object.fromEntries(DIMS.map((d) => [d, { label: state.result[d], reason: state.reasons[d] || "" }])) };
  try {
    if (editing) await api("PUT", `/api/annotations/${task.task_id}`, { ...body, updated_at: state.version });
    else await api("POST", "/api/annotations", body);
  } catch (e) {
    if (state.task === task) $("form-error").textContent = e.message; // not on another task opened meanwhile
    refreshProgress().catch(() => {}); // a 409 (saved in another tab, expired) means the count has moved
    return;
  }
  sessionStorage.removeItem(draftKey(task));
  if (state.task !== task) return; // the rater moved on (e.g. to My ratings): stay there
  toast(editing ? "Rating updated" : "Saved");
  if (editing) showMine();
  else await nextTask(views);
});

// ---- skipping ---------------------------------------------------------------------------------
function openSkip(reason = "") {
  if (state.editing) return;
  if ($("skip-panel").hidden) {
    $("skip-reasons").replaceChildren(...state.guide.skip_reasons.map((r) =>
      h("button", { type: "button", "aria-pressed": "false", onclick: () => { $("skip-other").value = r; markSkip(); } }, r)));
    $("skip-other").value = "";
    $("skip-error").textContent = "";
    $("skip-panel").hidden = false;
  }
  if (reason) $("skip-other").value = reason;
  markSkip();
  $("skip-other").focus();
}

function markSkip() {
  for (const b of $("skip-reasons").children) {
    const on = b.textContent === $("skip-other").value;
    b.classList.toggle("sel", on);
    b.setAttribute("aria-pressed", String(on));
  }
}

function closeSkip() {
  $("skip-panel").hidden = true;
  $("skip").focus();
}

const confirmSkip = () => exclusive(async () => {
  const task = state.task;
  const views = state.views;
  const reason = $("skip-other").value.trim();
  if (!reason) {
    $("skip-error").textContent = "Give a reason to skip: choose one above or type one.";
    $("skip-other").focus();
    return;
  }
  try {
    await api("POST", `/api/tasks/${task.task_id}/skip`, { reason });
  } catch (e) {
    if (state.task === task) $("skip-error").textContent = e.message;
    return;
  }
  sessionStorage.removeItem(draftKey(task));
  if (state.task !== task) return;
  toast("Skipped");
  await nextTask(views);
});

// ---- video playback ---------------------------------------------------------------------------
const videos = () => [$("video-a"), $("video-b")].filter((v) => !v.closest("[hidden]"));

function setVideos(task) {
  const pair = task.kind === "pair";
  $("video-error").hidden = true;
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

// A video that cannot load (missing file, unknown codec) showed a black box and nothing else.
function videoFailed(e) {
  if (!state.task || !e.target.getAttribute("src") || e.target.closest("[hidden]")) return; // B of a rating task
  $("skip-broken").hidden = state.editing;
  $("video-error").hidden = false;
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
    showAlert(`Could not load your ratings: ${e.message}`, showMine);
    return;
  }
  clearAlert();
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
  // Enter and Space on a focused control are its own action: they were taken for submit and play, so
  // keyboard users could not log out, pick a skip reason, cancel, ... and a cancel could save a rating.
  if ((e.key === "Enter" || e.key === " ") && e.target.closest("button, a[href], summary, [role=button]")) return;
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
  else if (e.key === "Escape" && !$("skip-panel").hidden) closeSkip();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("token-input").value); });
  $("logout").addEventListener("click", logout);
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", () => openSkip());
  $("skip-confirm").addEventListener("click", confirmSkip);
  $("skip-cancel").addEventListener("click", closeSkip);
  $("skip-other").addEventListener("input", () => { markSkip(); $("skip-error").textContent = ""; });
  // The skip panel's own keys: Enter in its box skips (Ctrl+Enter too: it used to submit the rating as
  // well), Esc closes the panel. Neither reaches the page's keys.
  $("skip-panel").addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.stopPropagation(); closeSkip(); }
    else if (e.key === "Enter" && e.target.id === "skip-other") { e.preventDefault(); e.stopPropagation(); confirmSkip(); }
  });
  $("skip-broken").addEventListener("click", () => openSkip(BROKEN));
  $("comment").addEventListener("input", saveDraft);
  $("alert-retry").addEventListener("click", () => { const retry = state.retry; clearAlert(); retry(); });
  $("cancel-edit").addEventListener("click", showMine);
  $("play").addEventListener("click", togglePlay);
  $("step-back").addEventListener("click", () => step(-1));
  $("step-fwd").addEventListener("click", () => step(1));
  $("speed").addEventListener("change", () => { for (const v of videos()) v.playbackRate = Number($("speed").value); });
  for (const ev of ["timeupdate", "seeked", "loadedmetadata"]) $("video-a").addEventListener(ev, showFrame);
  for (const v of [$("video-a"), $("video-b")]) v.addEventListener("error", videoFailed);
  document.addEventListener("keydown", onKey);

  // A login link `/#token=...` keeps the token out of server logs (fragments are never sent). One that
  // signs in another rater while someone is signed in asks first: their next ratings would go under
  // that name (a stored token that no longer works, e.g. reissued, is replaced without asking).
  const linked = () => {
    const match = location.hash.match(/^#token=(.+)$/);
    if (!match) return null;
    history.replaceState(null, "", location.pathname);
    return decodeURIComponent(match[1]).trim();
  };
  const nameOf = async (token) => {
    const res = await fetch("/api/me", { headers: { Authorization: `Bearer ${token}` } });
    return res.ok ? (await res.json()).name : null;
  };
  const fromLink = async (token) => {
    if (state.token && token !== state.token) {
      // Ask only when both tokens work and name different people (a reissued token is the same rater).
      const [who, next] = await Promise.all([nameOf(state.token), nameOf(token)]).catch(() => [null, null]);
      if (who && next && who !== next &&
          !confirm(`You are signed in as ${who}. Sign in as ${next} with this link instead?`)) {
        if (!state.me) login(state.token); // the page's first load: the one signed in stays
        return;
      }
    }
    login(token);
  };
  window.addEventListener("hashchange", () => {
    const token = linked();
    if (token) fromLink(token);
  });
  const token = linked();
  if (token) fromLink(token);
  else if (state.token) login(state.token);
  else show("login");
});
