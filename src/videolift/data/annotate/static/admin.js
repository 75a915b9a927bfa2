// videolift annotate: admin UI (progress, agreement, model-assisted review, pairwise results, raters,
// export). Uses h(), api(), answer(), toast(), show() and DIMS/LABELS from app.js.
"use strict";

window.Admin = (() => {
  const TABS = [["progress", "Progress"], ["agreement", "Agreement"], ["review", "Review"], ["pairs", "Pairwise"], ["raters", "Raters"]];
  const body = () => $("admin-body");
  const pct = (x) => (x == null ? "n/a" : `${(100 * x).toFixed(1)}%`);
  const num = (x) => (x == null ? "n/a" : x.toFixed(3));

  // In a box of its own that scrolls sideways: a wide table made the whole page wider than a phone.
  function table(head, rows) {
    return h("div", { class: "table-box" }, h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
  }

  function bar(fraction) {
    const fill = h("i");
    fill.style.width = `${Math.round(100 * Math.min(1, fraction))}%`;
    return h("div", { class: "bar" }, fill);
  }

  // A failed action's reason stays on screen until the next action begins, in a line by the control that
  // failed (#admin-error under the tabs: a tab, a reload, an export). A 2.2 s toast was gone before a
  // long reason could be read. Every action that calls the API goes through here; successes still toast.
  const errorLine = () => h("p", { class: "error", role: "alert" });
  async function attempt(line, what, work) {  // -> whether it worked
    for (const el of document.querySelectorAll("#admin-view .error")) el.textContent = "";
    try { await work(); return true; } catch (e) { line.textContent = `${what}: ${e.message}`; return false; }
  }
  const tabError = () => $("admin-error");

  // Export buttons: the server's reason (a record that cannot be exported), not only "export failed: 400".
  const exporter = (path, filename) => () => attempt(tabError(), `${filename} not exported`, () => download(path, filename));
  async function download(path, filename) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
    if (!res.ok) await answer(res);  // throws
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  const MAX_ROWS = 300;
  const leastRated = (rows) => (rows.length > MAX_ROWS ? [...rows].sort((a, b) => a.done - b.done).slice(0, MAX_ROWS) : rows);

  async function progress() {
    const p = await api("GET", "/api/admin/progress");
    const stat = (label, value) => h("div", { class: "stat" }, h("span", { class: "muted" }, label), h("b", {}, value));
    body().replaceChildren(
      h("div", { class: "stats" },
        // A study of pairs alone read "0 / 0" here: its own totals, and the rating study's only if it has one.
        ...(p.videos || !p.pairs ? [
          stat("ratings", `${p.ratings_done} / ${p.ratings_needed}`),
          stat("videos complete", `${p.videos_complete} / ${p.videos}`),
          stat("ratings per video", String(p.ratings_per_video))] : []),
        ...(p.pairs ? [
          stat("pairwise judgements", `${p.judgements_done} / ${p.judgements_needed}`),
          stat("pairs complete", `${p.pairs_complete} / ${p.pairs}`)] : [])),
      h("div", { class: "row" },
        h("button", { class: "primary", onclick: exporter("/api/admin/export", "hra.jsonl") }, "Export HRA (JSONL)"),
        h("button", { onclick: exporter("/api/admin/export?with_reviews=true", "hra_reviewed.jsonl") }, "Export with reviews")),
      h("h2", {}, "Annotators"),
      table(["annotator", "done", "skipped", "open", "pairs done", "pairs skipped"],
        p.annotators.map((a) => [a.name, a.done, a.skipped, a.open, a.pair_done, a.pair_skipped])),
      h("h2", {}, "Videos", p.per_video.length > MAX_ROWS ? h("span", { class: "muted" }, ` (least rated ${MAX_ROWS} of ${p.per_video.length})`) : ""),
      table(["video", "prompt", "done", "", "open", "skipped"],
        leastRated(p.per_video).map((v) => [v.video_id, v.prompt, `${v.done} / ${p.ratings_per_video}`, bar(v.done / p.ratings_per_video), v.open,
          v.skipped ? `${v.skipped}: ${v.skip_reasons.map((s) => `${s.reason} (${s.annotator})`).join("; ")}` : 0])));
  }

  async function agreement() {
    const a = await api("GET", "/api/admin/agreement");
    body().replaceChildren(
      h("p", { class: "muted" }, "Krippendorff's alpha (ordinal: Bad < Normal < Good) and pairwise percent agreement, over videos rated at least twice."),
      table(["dimension", "alpha", "pairwise agreement", "videos"],
        DIMS.map((d) => [title(d), num(a[d].krippendorff_alpha), pct(a[d].pairwise_agreement), a[d].videos])));
  }

  async function review() {
    const critic = body().dataset.critic || "";
    const minGap = body().dataset.minGap || "1";
    const r = await api("GET", `/api/admin/review?min_gap=${encodeURIComponent(minGap)}${critic ? `&critic=${encodeURIComponent(critic)}` : ""}`);
    // Every control named (aria-label): a screen reader said only "combo box" or "edit text".
    const upload = h("input", { type: "file", accept: ".jsonl,.json,application/x-ndjson", "aria-label": "Critic scores file (JSONL)" });
    // The critic listed (none chosen: the server's default, the last imported) is the one shown as chosen,
    // and the name an import goes under (importing again replaces). They said the first critic by name
    // and "critic" over another critic's list.
    const shown = r.critic || critic;
    const name = h("input", { placeholder: "critic name", value: shown || "critic", "aria-label": "Critic name" });
    const gap = h("select", { "aria-label": "Minimum gap" }, ["0.5", "1", "1.5", "2"].map((g) => h("option", { selected: g === minGap }, g)));
    // Reloaded with its failure said (a busy database's 503 threw in the page, unsaid), as open() does.
    const reload = () => attempt(tabError(), "review not reloaded", review);
    gap.addEventListener("change", () => { body().dataset.minGap = gap.value; reload(); });
    const pick = h("select", { "aria-label": "Critic" }, r.critics.map((c) => h("option", { selected: c === shown }, c)));
    pick.addEventListener("change", () => { body().dataset.critic = pick.value; reload(); });
    const failed = errorLine();
    const importFile = async () => {
      if (!upload.files.length) throw new Error("choose a critic scores file");
      const file = upload.files[0];
      // the file as it is (its text() turned bytes that are not UTF-8 into U+FFFD: "malformed JSON")
      const data = await answer(await fetch(`/api/admin/critic?critic=${encodeURIComponent(name.value)}`, {
        method: "POST", headers: { Authorization: `Bearer ${state.token}` }, body: file }));
      // Importing again replaces the critic whole: said when earlier scores went with it.
      const dropped = data.dropped ? `; ${data.dropped} earlier scores of this critic dropped` : "";
      toast(`${file.name}: imported ${data.matched} scores (${data.unmatched} unmatched${dropped})`);
      body().dataset.critic = name.value.trim();  // as stored
    };
    // A refusal, an answer that is not JSON, no answer: said, with the file (it threw unsaid).
    const importButton = h("button", { onclick: async () => {
      const what = upload.files.length ? `${upload.files[0].name} not imported` : "nothing imported";
      if (await attempt(failed, what, importFile)) reload();  // a failed reload is no failed import
    } }, "Import critic scores");
    body().replaceChildren(
      h("p", { class: "muted" }, "Videos where the critic's label is far from the raters' (Bad 0, Normal 1, Good 2), largest gap first. Adjudicate to record the corrected ratings."),
      h("div", { class: "row" }, upload, name, importButton),
      failed,
      h("div", { class: "row" }, h("span", { class: "muted" }, "critic"), pick, h("span", { class: "muted" }, "min gap"), gap,
        h("span", { class: "muted" }, `${r.items.length} videos to review`)),
      h("div", { class: "list" }, r.items.map((item) => reviewItem(item, Number(minGap)))));
  }

  // The raters' most frequent rating (ties: the worse label): the adjudication starts from the status quo.
  function majority(raters) {
    const count = (l) => raters.filter((r) => r.label === l).length;
    const label = [...LABELS].reverse().reduce((best, l) => (count(l) > count(best) ? l : best), "Bad");
    return raters.find((r) => r.label === label) || { label: "Good", reason: "" };
  }

  function reviewItem(item, minGap) {
    const form = {};
    const rows = DIMS.map((dim) => {
      const d = item.dimensions[dim];
      const start = (item.review && item.review[dim]) || (d ? majority(d.raters) : { label: "Good", reason: "" });
      const select = h("select", { "aria-label": `${title(dim)}: adjudicated label` },
        LABELS.map((l) => h("option", { selected: l === start.label }, l)));
      const reason = h("input", { value: start.reason || "", placeholder: "reason", "aria-label": `${title(dim)}: adjudicated reason` });
      form[dim] = [select, reason];
      const raters = d ? d.raters.map((x) => h("div", {}, h("span", { class: `tag ${x.label}` }, x.label), h("span", { class: "muted" }, x.reason))) : [];
      return h("div", { class: `dim${d && d.gap >= minGap ? " flagged" : ""}` },
        h("h2", {}, title(dim), h("span", { class: "muted mono" }, d ? `gap ${d.gap.toFixed(2)}` : "")),
        h("div", {}, "critic ", d ? h("span", { class: `tag ${d.critic.label}` }, d.critic.label) : "n/a", " ",
          h("span", { class: "muted" }, d ? d.critic.reason : "")),
        h("div", {}, "raters", raters),
        h("div", { class: "row" }, select, reason));
    });
    const status = h("div", { class: "muted" });
    const showStatus = () => {
      status.textContent = `reward ${item.reward == null ? "n/a" : item.reward.toFixed(3)}${item.review ? " · reviewed" : ""}`;
    };
    showStatus();
    const failed = errorLine();  // under the card's button: the top of a long list is out of view
    const save = () => attempt(failed, "adjudication not saved", async () => {
      const ratings = Object.fromEntries(DIMS.map((d) => [d, { label: form[d][0].value, reason: form[d][1].value }]));
      await api("PUT", `/api/admin/review/${encodeURIComponent(item.video_id)}`, { ratings });
      toast("review saved");
      item.review = ratings; // marked at once: it said "reviewed" only once the tab was opened again
      showStatus();
    });
    return h("div", { class: "card" },
      h("div", { class: "row" }, h("video", { src: item.video_url, muted: true, loop: true, autoplay: true, class: "thumb" }),
        h("div", { class: "text" }, h("b", {}, item.video_id), h("div", {}, item.prompt), status)),
      h("div", { class: "review-dims" }, rows), h("button", { class: "primary", onclick: save }, "Save adjudication"), failed);
  }

  async function pairs() {
    const r = await api("GET", "/api/admin/pairs");
    const out = [h("div", { class: "row" },
      h("button", { class: "primary", onclick: exporter("/api/admin/pairs", "pairwise.json") }, "Export results (JSON)"))];
    if (!r.comparisons.length) out.push(h("p", { class: "muted" }, "No pairwise judgements yet (create pairs with `videolift annotate create-pairs`)."));
    for (const c of r.comparisons) {
      out.push(h("h2", {}, `${c.model_a} vs ${c.model_b}`),
        h("p", { class: "muted" }, `${c.judgements} judgements on ${c.pairs_judged} pairs; win / tie / loss of ${c.model_a}`),
        table(["dimension", "win", "tie", "loss"], DIMS.map((d) => {
          const x = c.dimensions[d];
          return [title(d), `${x.win} (${pct(x.win_rate)})`, `${x.tie} (${pct(x.tie_rate)})`, `${x.loss} (${pct(x.loss_rate)})`];
        })));
    }
    // Why raters skipped a pair ("Video does not play", "Offensive content"): flags the admin must see.
    if (r.skipped.length) {
      out.push(h("h2", {}, `Skipped pairs (${r.skipped.length})`),
        table(["pair", "prompt", "videos", "annotator", "reason"],
          r.skipped.map((s) => [s.pair_id, s.prompt, `${s.video_a} (${s.model_a}) / ${s.video_b} (${s.model_b})`, s.annotator, s.reason])));
    }
    body().replaceChildren(...out);
  }

  function raters() {
    const name = h("input", { placeholder: "rater name", "aria-label": "Rater name" });
    const out = h("pre", { class: "mono" });
    const failed = errorLine();
    const add = (reissue) => attempt(failed, reissue ? "token not reissued" : "rater not added", async () => {
      const r = await api("POST", "/api/admin/annotators", { name: name.value, reissue });
      out.textContent = `${r.name}: ${r.token}\nlogin link: ${location.origin}/#token=${encodeURIComponent(r.token)}\n(shown once)`;
    });
    body().replaceChildren(
      h("p", { class: "muted" }, "Add a rater and send them their login link. Tokens are stored hashed: a lost one can only be reissued."),
      h("div", { class: "row" }, name, h("button", { class: "primary", onclick: () => add(false) }, "Add rater"),
        h("button", { onclick: () => add(true) }, "Reissue token")),
      failed, out);
  }

  const VIEWS = { progress, agreement, review, pairs, raters };

  async function open(tab) {
    for (const b of $("admin-tabs").children) b.classList.toggle("active", b.dataset.tab === tab);
    await attempt(tabError(), `${TABS.find(([t]) => t === tab)[1]} not loaded`, VIEWS[tab]);
  }

  function start() {
    $("admin-tabs").replaceChildren(...TABS.map(([tab, label]) => h("button", { "data-tab": tab, onclick: () => open(tab) }, label)));
    show("admin");
    open("progress");
  }

  return { start };
})();
