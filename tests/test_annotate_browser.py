"""A real browser drives the rater UI: log in, rate a video on all three dimensions, find it in the export.

Needs Debian's chromium (``apt-get install chromium``); Playwright's own browser download is not used.
Set VIDEOLIFT_SCREENSHOTS=DIR to keep screenshots of the pages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from test_annotate_support import (
    DIMS,
    Server,
    add_annotator,
    auth,
    cli,
    create,
    make_pair_project,
    make_project,
    ratings,
    write_manifest,
)
from videolift.core.jsonl import write_jsonl

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        yield b
        b.close()


def shot(page, name: str) -> None:
    if out := os.environ.get("VIDEOLIFT_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / f"{name}.png"), full_page=True)


def test_rate_a_video_in_the_browser_and_find_it_in_the_export(tmp_path, browser):
    project, admin = make_project(tmp_path, n=3, r=1)
    token = add_annotator(project, "alice")
    with Server(project) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        page.fill("#token-input", token)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#rate-view:not([hidden])")
        assert page.text_content("#prompt") == "a red square moving right #0"
        assert "Good = no clear problem" in page.text_content("#intro")
        # Guideline definitions are visible on the buttons.
        assert "Jumps, dropped frames" in page.text_content("#dim-motion_smoothness")
        # The video loads, loops and steps frame by frame.
        page.wait_for_function("() => document.getElementById('video-a').readyState >= 2", timeout=20_000)
        assert page.eval_on_selector("#video-a", "v => v.loop && v.videoWidth") == 32
        page.keyboard.press("Space")  # pause
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.getElementById('frame').textContent.startsWith('frame ')")
        before = page.text_content("#frame")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => document.getElementById('frame').textContent !== {json.dumps(before)}")
        assert page.text_content("#frame").endswith("/ 9")
        # Keyboard: 3 = semantic consistency Bad (focuses its reason box), 4 = motion Good.
        page.keyboard.press("3")
        page.keyboard.type("The square is red but the prompt asks for blue.")
        page.keyboard.press("Escape")
        page.keyboard.press("4")
        # Mouse: fidelity Normal, without a reason first: the form refuses.
        page.click("#dim-video_fidelity .option.Normal")
        page.keyboard.press("Escape")
        page.click("#submit")
        assert "Give a reason for Video fidelity" in page.text_content("#form-error")
        page.fill("#reason-video_fidelity", "Edges are a little soft.")
        shot(page, "rater")
        page.click("#submit")
        page.wait_for_function("() => document.getElementById('prompt').textContent.endsWith('#1')")
        page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('1 done')")
        # Own ratings: listed, and editable.
        page.click("#nav button[data-view=mine]")
        page.wait_for_selector(".item")
        assert "Semantic consistency: Bad" in page.text_content("#mine-list")
        shot(page, "mine")
        # Admin: progress and export in the UI.
        page.click("#logout")
        page.wait_for_selector("#login-view:not([hidden])")
        page.fill("#token-input", admin)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#admin-body table")
        assert "1 / 3" in page.text_content("#admin-body")
        with page.expect_download() as download:
            page.click("text=Export HRA (JSONL)")
        exported = Path(download.value.path()).read_text()
        shot(page, "admin")
        assert errors == []
        api_export = httpx.get(server.url + "/api/admin/export", headers=auth(admin)).text
    (record,) = [json.loads(line) for line in exported.splitlines()]
    assert exported == api_export
    assert record["annotator"] == "alice" and record["video"] == "v/0000.mp4"
    assert record["ratings"] == {
        "semantic_consistency": {"label": "Bad", "reason": "The square is red but the prompt asks for blue."},
        "motion_smoothness": {"label": "Good", "reason": ""},
        "video_fidelity": {"label": "Normal", "reason": "Edges are a little soft."},
    }


def test_pairwise_judgement_by_keyboard(tmp_path, browser):
    project, admin = make_pair_project(tmp_path, 1, 1)
    token = add_annotator(project, "alice")
    with Server(project) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{server.url}/#token={token}")  # the login link the admin UI hands out
        page.wait_for_selector("#fig-b:not([hidden])")
        page.wait_for_function("() => document.getElementById('video-b').readyState >= 2", timeout=20_000)
        for key in ("1", "6", "8", "Enter"):  # left better, right better, tie; submit
            page.keyboard.press(key)
        page.wait_for_selector("#done-view:not([hidden])")
        shot(page, "pairwise_done")
        results = httpx.get(server.url + "/api/admin/pairs", headers=auth(admin)).json()
        # The admin's Progress of a study of pairs alone: its judgements (it read "ratings 0 / 0").
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{server.url}/#token={admin}")
        stat = page.locator("#admin-body .stat", has_text="pairwise judgements")
        stat.wait_for()
        assert stat.locator("b").text_content() == "1 / 6"  # 1 pair, 6 judgements each by default
        assert page.locator("#admin-body .stat", has_text="ratings").count() == 0
    (judgement,) = results["judgements"]
    left = judgement["shown_left"]
    right = "b" if left == "a" else "a"  # model names default to the manifest stems
    assert judgement["winner"] == {
        "semantic_consistency": left,
        "motion_smoothness": right,
        "video_fidelity": "tie",
    }


# ---- keyboard, errors and accessibility: one server for these, a fresh rater (and browser context) each --
LONG = "x" * 330  # a prompt word wider than any phone
# Every non-GET request the page sends, recorded synchronously (a page.on("request") list lags behind).
RECORD_SENT = """(() => {
  window.sent = [];
  const fetch0 = window.fetch;
  window.fetch = (url, opts = {}) => {
    if (opts.method && opts.method !== "GET") window.sent.push(`${opts.method} ${url}`);
    return fetch0(url, opts);
  };
})();"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    manifest = write_manifest(tmp / "m.jsonl", tmp / "videos", 24, prompt=LONG + " a red square #{i}")
    project = tmp / "project"
    create(project, tmp / "videos", manifest, "--ratings-per-video", "1")
    with Server(project) as server:
        yield project, server


def rater(study, browser, name, width=1280):
    """A page logged in as a new rater on their first task; non-GET requests land in window.sent."""
    project, server = study
    token = add_annotator(project, name)
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.add_init_script(RECORD_SENT)
    page.goto(f"{server.url}/#token={token}")
    page.wait_for_selector("#rate-view:not([hidden])")
    return page, token


def sent(page) -> list[str]:
    return page.evaluate("window.sent")


def mine(study, token) -> list[dict]:
    return httpx.get(study[1].url + "/api/annotations/mine", headers=auth(token)).json()


def test_enter_and_space_on_a_focused_button_press_that_button(study, browser):
    # They were taken for submit / play: Enter on "My ratings", a skip reason, "Skip task", "Cancel" or
    # "Log out" submitted the rating instead (or said "Choose a rating").
    page, token = rater(study, browser, "kb")
    for key in "147":
        page.keyboard.press(key)
    page.focus("#nav button[data-view=mine]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#mine-view:not([hidden])")
    page.focus("#nav button[data-view=rate]")
    page.keyboard.press("Space")
    page.wait_for_selector("#rate-view:not([hidden])")
    page.focus("#dim-motion_smoothness .option.Bad")
    page.keyboard.press("Space")
    assert page.get_attribute("#dim-motion_smoothness .option.Bad", "aria-pressed") == "true"
    page.keyboard.press("Escape")
    page.keyboard.press("4")
    page.focus("details.guide summary")
    page.keyboard.press("Enter")
    assert page.eval_on_selector("details.guide", "d => d.open")
    page.keyboard.press("s")
    page.focus("#skip-reasons button >> nth=0")
    page.keyboard.press("Enter")
    reason = page.text_content("#skip-reasons button >> nth=0")
    assert page.input_value("#skip-other") == reason
    assert page.get_attribute("#skip-reasons button >> nth=0", "aria-pressed") == "true"
    first = page.evaluate("state.task.task_id")
    page.focus("#skip-confirm")
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => state.task.task_id !== {first}")
    assert sent(page) == [f"POST /api/tasks/{first}/skip"]
    assert page.text_content("#form-error") == ""
    # The next task by keys alone (focus is on its prompt), then "Cancel" on an edit by Enter: no PUT.
    for key in ("1", "4", "7", "Enter"):
        page.keyboard.press(key)
    page.wait_for_function("() => window.sent.length === 2")
    page.click("#nav button[data-view=mine]")
    page.click("#mine-list .item button")
    page.keyboard.press("3")
    page.keyboard.type("changed my mind")
    page.focus("#cancel-edit")
    page.keyboard.press("Enter")
    page.wait_for_selector("#mine-view:not([hidden])")
    assert sent(page) == [f"POST /api/tasks/{first}/skip", "POST /api/annotations"]
    page.focus("#logout")
    page.keyboard.press("Enter")
    page.wait_for_selector("#login-view:not([hidden])")
    done, skipped = mine(study, token)
    assert skipped["skip_reason"] == reason and done["ratings"]["semantic_consistency"]["label"] == "Good"


def test_enter_after_mouse_clicks_on_the_options_submits(study, browser):
    # The click left focus on the option, where Enter pressed it again: nothing was sent.
    page, _ = rater(study, browser, "mouse")
    for dim in ("semantic_consistency", "motion_smoothness", "video_fidelity"):
        page.click(f"#dim-{dim} .option.Good")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.sent.length === 1")
    assert sent(page) == ["POST /api/annotations"]


def release(page, held: list) -> None:
    """Let the first held request through, once Playwright has handed its route to Python (a request the
    page has sent may reach the route handler a moment later)."""
    while not held:
        page.wait_for_timeout(20)
    held.pop(0).continue_()


def test_my_ratings_opened_while_a_rating_saves_or_the_next_task_loads_stays_open(study, browser):
    # The saved rating's next task, arriving after the rater had opened My ratings, switched the page
    # back to rating (whether My ratings was opened while the rating was saved or while the task loaded).
    page, _ = rater(study, browser, "wanders")
    for held_path in ("**/api/annotations", "**/api/next"):
        held: list = []

        def hold(route):  # one parameter: Playwright passes (route, request) to two
            held.append(route)  # noqa: B023 (used within this iteration only)

        page.route(held_path, hold)
        for key in ("1", "4", "7"):
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_function("() => state.busy")
        page.click("#nav button[data-view=mine]")
        page.wait_for_selector("#mine-view:not([hidden])")
        release(page, held)
        page.wait_for_function("() => !state.busy")  # the page has handled it all (it used to show the task)
        assert page.is_visible("#mine-view") and page.is_hidden("#rate-view"), held_path
        page.unroute(held_path, hold)
        page.click("#nav button[data-view=rate]")
        page.wait_for_selector("#rate-view:not([hidden])")
        page.wait_for_function("() => !state.busy")


def test_the_skip_box_keys_skip_only_and_esc_closes_the_panel(study, browser):
    # Ctrl+Enter in the skip box both submitted the rating (201) and tried to skip (409).
    page, token = rater(study, browser, "ctrl")
    task = page.evaluate("state.task.task_id")
    for key in "147":
        page.keyboard.press(key)
    page.keyboard.press("s")
    page.keyboard.press("Escape")
    assert page.is_hidden("#skip-panel") and page.evaluate("document.activeElement.id") == "skip"
    page.keyboard.press("s")
    page.keyboard.type("Obscure or ambiguous prompt")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(f"() => state.task.task_id !== {task}")
    assert sent(page) == [f"POST /api/tasks/{task}/skip"]
    assert [item["status"] for item in mine(study, token)] == ["skipped"]


def test_a_second_enter_while_saving_or_loading_sends_nothing(study, browser):
    # Enter twice while a rating was saved, or once more while the next task loaded, posted the old task
    # again; its 409 ("already saved") then showed on the next task.
    page, _ = rater(study, browser, "twice")
    task = page.evaluate("state.task.task_id")
    held = []
    page.route("**/api/annotations", lambda route: held.append(route))
    page.route("**/api/next", lambda route: held.append(route))
    for key in ("1", "4", "7", "Enter", "Enter"):
        page.keyboard.press(key)
    assert sent(page) == ["POST /api/annotations"] and page.is_disabled("#submit")
    with page.expect_request("**/api/next"):
        release(page, held)  # the rating is saved; the next task is on its way
    page.keyboard.press("Enter")
    assert sent(page) == ["POST /api/annotations"]
    release(page, held)
    page.wait_for_function(f"() => state.task.task_id !== {task}")
    assert page.text_content("#form-error") == "" and not page.is_disabled("#submit")


def test_failed_loads_stay_on_screen_with_retry_and_a_broken_video_can_be_skipped(study, browser):
    project, server = study
    token = add_annotator(project, "net")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    busy = '{"detail": "too much contention while assigning a task; try again"}'
    page.route(
        "**/api/next", lambda route: route.fulfill(status=503, content_type="application/json", body=busy)
    )
    page.route("**/media/**", lambda route: route.fulfill(status=404, body="no such video"))
    page.goto(f"{server.url}/#token={token}")
    page.wait_for_selector("#alert:not([hidden])")
    assert "too much contention" in page.text_content("#alert")
    page.unroute("**/api/next")
    page.click("#alert-retry")
    page.wait_for_selector("#rate-view:not([hidden])")
    assert page.is_hidden("#alert")
    # The video cannot load: said so, with the skip reason that fits.
    page.wait_for_selector("#video-error:not([hidden])")
    task = page.evaluate("state.task.task_id")
    page.click("#skip-broken")
    assert page.input_value("#skip-other") == "Video does not play"
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => state.task.task_id !== {task}")
    assert mine(study, token)[0]["skip_reason"] == "Video does not play"


def test_a_phone_sized_page_is_labelled_and_keeps_a_draft_over_a_reload(study, browser):
    page, _ = rater(study, browser, "small", width=360)
    # A prompt word of 330 characters made the page 3,389 px wide; the header pushed "Log out" off screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert page.evaluate("document.getElementById('logout').getBoundingClientRect().right") <= 360
    assert page.evaluate("document.activeElement.id") == "prompt"  # a screen reader reads the new task
    # Each card is a named group; reason boxes are named by their dimension; selections are announced.
    motion = page.get_by_role("group", name="Motion smoothness")
    assert motion.get_by_role("button", pressed=True).count() == 0
    page.keyboard.press("5")
    page.keyboard.type("a small stutter")
    assert motion.get_by_role("button", pressed=True).text_content().startswith("Normal")
    assert page.get_by_role("textbox", name="Reason for Motion smoothness").input_value() == "a small stutter"
    assert page.get_attribute("#comment", "aria-label") == "Comment (optional)"  # shown for pairs
    # Selections and reasons were lost on a reload (the same task comes back).
    page.reload()
    page.wait_for_selector("#rate-view:not([hidden])")
    assert page.input_value("#reason-motion_smoothness") == "a small stutter"
    assert page.get_attribute("#dim-motion_smoothness .option.Normal", "aria-pressed") == "true"


def test_a_login_link_for_another_rater_asks_before_switching(study, browser):
    """A link (or a page steering an open tab) must not silently sign alice in as bob: her next ratings
    would be stored under his name. A stored token that no longer works is replaced without asking."""
    project, server = study
    page, _ = rater(study, browser, "alice_link")
    bob = add_annotator(project, "bob_link")
    asked = []

    def dismiss(dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.evaluate(f"location.hash = '#token={bob}'")
    page.wait_for_function("() => location.hash === ''")
    page.wait_for_timeout(300)
    assert asked and "signed in as alice_link" in asked[0] and "as bob_link" in asked[0]
    assert page.text_content("#who").startswith("alice_link")
    # Alice's own token reissued (she lost it): her new link signs her in without a question.
    renewed = cli("annotate", "add-annotator", "alice_link", "--reissue", "--project", str(project))
    page.evaluate(f"location.hash = '#token={renewed}'")
    page.wait_for_function(f"() => localStorage.getItem('videolift-token') === '{renewed}'")
    assert len(asked) == 1 and page.text_content("#who").startswith("alice_link")
    page.remove_listener("dialog", dismiss)
    page.on("dialog", lambda dialog: dialog.accept())
    page.evaluate(f"location.hash = '#token={bob}'")
    page.wait_for_function("() => document.getElementById('who').textContent.startsWith('bob_link')")
    # A fresh page whose stored token was revoked: the link signs in without a question.
    fresh = browser.new_page()
    fresh.goto(server.url)
    fresh.evaluate("localStorage.setItem('videolift-token', 'revoked')")
    questions = []
    fresh.on("dialog", lambda d: (questions.append(d.message), d.dismiss()))
    fresh.goto(f"{server.url}/#token={add_annotator(project, 'carol_link')}")
    fresh.wait_for_function("() => document.getElementById('who').textContent.startsWith('carol_link')")
    assert not questions


PLAYING = "() => !document.getElementById('video-a').paused"


def test_the_first_task_and_an_edited_one_play_as_the_button_says(study, browser):
    # openTask started the videos while the rating view was still hidden (the first task after a login
    # or a reload, and Edit from My ratings): they stood on their first frame under a "Pause" button.
    page, _ = rater(study, browser, "plays")
    page.wait_for_function(PLAYING, timeout=10_000)
    assert page.text_content("#play") == "Pause"
    for key in ("1", "4", "7", "Enter"):
        page.keyboard.press(key)
    page.wait_for_function("() => window.sent.length === 1")
    page.click("#nav button[data-view=mine]")
    page.click("#mine-list .item button")
    page.wait_for_selector("#edit-banner:not([hidden])")
    page.wait_for_function(PLAYING, timeout=10_000)
    assert page.text_content("#play") == "Pause"


def test_on_a_phone_the_next_task_opens_with_its_video_in_view(study, browser):
    # Focusing the new prompt scrolled only as far as the prompt: after Submit at the bottom of a phone
    # page, the next video sat under the sticky header, cut off, on every task.
    page, _ = rater(study, browser, "phone_next", width=390)
    for key in ("1", "4", "7"):
        page.keyboard.press(key)
    first = page.evaluate("state.task.task_id")
    page.click("#submit")  # scrolls down to it, as a rater's thumb would
    page.wait_for_function(f"() => state.task && state.task.task_id !== {first}")
    top = page.evaluate("document.getElementById('video-a').getBoundingClientRect().top")
    header = page.evaluate("document.querySelector('header').getBoundingClientRect().bottom")
    assert top >= header
    assert page.evaluate("document.activeElement.id") == "prompt"  # the keys and screen readers still work


def test_the_admin_pages_fit_a_phone_and_the_review_form_is_labelled(study, browser, tmp_path):
    project, server = study
    admin = cli("annotate", "admin-token", "--project", str(project))
    # A rating the critic contradicts on every dimension puts its video on the review list.
    token = add_annotator(project, "reviewed")
    task = httpx.get(server.url + "/api/next", headers=auth(token)).json()
    body = {"task_id": task["task_id"], "ratings": ratings("Bad", "reviewed by the test")}
    httpx.post(server.url + "/api/annotations", json=body, headers=auth(token)).raise_for_status()
    critic = {d: {"label": "Good", "reason": "fine", "score": 0.9} for d in DIMS}
    scores = tmp_path / "scores.jsonl"
    write_jsonl(scores, [{"video_id": f"v/{i:04d}.mp4", "ratings": critic, "reward": 0.9} for i in range(24)])
    cli("annotate", "import-critic", str(scores), "--project", str(project))
    page = browser.new_page(viewport={"width": 390, "height": 800})
    page.goto(f"{server.url}/#token={admin}")
    page.wait_for_selector("#admin-body table")
    # The videos table (long prompts, a progress bar) made the page 500-3,000 px wide: the skip column and
    # the header's end were off screen. Tables scroll on their own now.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.click("#admin-tabs button[data-tab=review]")
    card = page.locator("#admin-body .list > .card", has_text="reviewed by the test")
    card.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The import and adjudication controls had no names (a screen reader said "combo box" nine times).
    for role, name in (("combobox", "Critic"), ("combobox", "Minimum gap"), ("textbox", "Critic name")):
        assert page.get_by_role(role, name=name, exact=True).count() == 1
    assert page.get_by_label("Critic scores file (JSONL)").count() == 1
    label = card.get_by_role("combobox", name="Motion smoothness: adjudicated label")
    reason = card.get_by_role("textbox", name="Motion smoothness: adjudicated reason")
    assert label.input_value() == "Bad" and reason.input_value() == "reviewed by the test"
    label.select_option("Normal")
    reason.fill("a slight stutter, not a jump")
    assert "· reviewed" not in card.text_content()
    card.get_by_role("button", name="Save adjudication").click()
    # Saved, and the card says so at once (it said so only once the tab was opened again).
    card.get_by_text("· reviewed").wait_for()
    page.click("#admin-tabs button[data-tab=raters]")
    assert page.get_by_role("textbox", name="Rater name").count() == 1
    # A refused rater stays said (it was a 2.2 s toast), until the next action.
    page.get_by_role("button", name="Add rater").click()
    page.get_by_role("alert").get_by_text("rater not added: a user name must have 1 to 100").wait_for()
    export = httpx.get(server.url + "/api/admin/export?with_reviews=true", headers=auth(admin)).text
    (review,) = [r for r in map(json.loads, export.splitlines()) if r["annotator"] == "review:admin"]
    assert review["ratings"]["motion_smoothness"] == {
        "label": "Normal",
        "reason": "a slight stutter, not a jump",
    }


def test_a_second_tab_refused_for_a_task_saved_in_the_first_shows_the_new_count(study, browser):
    project, server = study
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page, other = context.new_page(), context.new_page()  # two tabs of one rater (one localStorage)
    page.goto(f"{server.url}/#token={add_annotator(project, 'two_tabs')}")
    page.wait_for_selector("#rate-view:not([hidden])")
    other.goto(server.url)
    other.wait_for_selector("#rate-view:not([hidden])")
    assert other.evaluate("state.task.task_id") == page.evaluate("state.task.task_id")
    for tab in (page, other):
        for key in ("1", "4", "7"):
            tab.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('1 done')")
    other.keyboard.press("Enter")
    other.wait_for_function(
        "() => document.getElementById('form-error').textContent.includes('already saved')"
    )
    # The refusal left the count at "0 done" although the rating was stored (from the first tab).
    other.wait_for_function("() => document.getElementById('progress').textContent.startsWith('1 done')")
    context.close()


def test_the_review_tab_shows_the_critic_it_lists_and_names_a_refused_import(tmp_path, browser):
    """The critic box and name box said the first critic by name and "critic" while the list was of the
    last critic by name; an import answered with something else than JSON (a proxy's HTML page) threw
    in the page and the admin was told nothing, a refused one did not name the file; a refused export
    said only its status. A failed action's reason (an export, an adjudication, a reload) was a toast gone
    after 2.2 s: it stays now, by the control that failed, until the next action."""
    project, admin = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "rater")
    with Server(project) as server:  # a rating the critics contradict
        task = httpx.get(server.url + "/api/next", headers=auth(token)).json()
        body = {"task_id": task["task_id"], "ratings": ratings("Bad")}
        httpx.post(server.url + "/api/annotations", json=body, headers=auth(token)).raise_for_status()
        for name in ("zeta", "alpha"):  # imported in this order: alpha is the last imported
            critic = {d: {"label": "Good", "reason": f"{name} says Good", "score": 0.9} for d in DIMS}
            write_jsonl(tmp_path / f"{name}.jsonl", [{"video_id": "v/0000.mp4", "ratings": critic}])
            cli(
                "annotate",
                "import-critic",
                str(tmp_path / f"{name}.jsonl"),
                "--project",
                str(project),
                "--critic",
                name,
            )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/#token={admin}")
        page.wait_for_selector("#admin-body table")
        # An export the server refuses: its reason (it said "export failed: 400").
        refusal = '{"detail": "video \'v/0000.mp4\' cannot be exported as an HRA record"}'
        page.route(
            "**/api/admin/export*",
            lambda route: route.fulfill(status=400, content_type="application/json", body=refusal),
        )
        page.get_by_role("button", name="Export HRA (JSONL)").click()
        tab_error = page.locator("#admin-error[role=alert]")
        tab_error.get_by_text("hra.jsonl not exported: video 'v/0000.mp4' cannot be exported").wait_for()
        page.click("#admin-tabs button[data-tab=review]")  # the next action: the old reason goes
        page.wait_for_function("() => document.getElementById('admin-error').textContent === ''")
        page.locator("#admin-body .card", has_text="alpha says Good").wait_for()
        pick = page.get_by_role("combobox", name="Critic", exact=True)
        name = page.get_by_role("textbox", name="Critic name", exact=True)
        assert pick.input_value() == "alpha" and name.input_value() == "alpha"
        pick.select_option("zeta")
        page.locator("#admin-body .card", has_text="zeta says Good").wait_for()
        assert pick.input_value() == "zeta" and name.input_value() == "zeta"
        # A file that is not JSONL: the server's refusal, with the file's name.
        upload = page.get_by_label("Critic scores file (JSONL)")
        upload.set_input_files({"name": "scores.csv", "mimeType": "text/csv", "buffer": b"video,label\n"})
        page.get_by_role("button", name="Import critic scores").click()
        failed = page.locator("#admin-body [role=alert]")
        failed.get_by_text("scores.csv not imported: the uploaded scores, line 1: malformed JSON").wait_for()
        # An answer that is not JSON (a proxy's own 413 page): said so, nothing thrown.
        page.route(
            "**/api/admin/critic*",
            lambda route: route.fulfill(status=413, content_type="text/html", body="<html>Too Large</html>"),
        )
        page.get_by_role("button", name="Import critic scores").click()
        failed.get_by_text("scores.csv not imported: 413").wait_for()
        # Another critic or gap chosen while the database is busy: said (it threw in the page).
        busy = '{"detail": "the database is busy (locked); try again in a moment"}'
        page.route(
            "**/api/admin/review*",
            lambda route: route.fulfill(status=503, content_type="application/json", body=busy),
        )
        # An adjudication refused: said under its card's button (a long list's top is out of view).
        page.route(
            "**/api/admin/review/*",
            lambda route: route.fulfill(status=503, content_type="application/json", body=busy),
        )
        card = page.locator("#admin-body .list > .card")
        card.get_by_role("button", name="Save adjudication").click()
        card.get_by_role("alert").get_by_text("adjudication not saved: the database is busy").wait_for()
        assert page.text_content("#admin-body > [role=alert]") == ""  # the import's reason: gone
        page.get_by_role("combobox", name="Minimum gap", exact=True).select_option("2")
        tab_error.get_by_text("review not reloaded: the database is busy").wait_for()
        assert errors == []
