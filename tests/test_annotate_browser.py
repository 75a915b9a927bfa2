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

from test_annotate_support import Server, add_annotator, auth, make_pair_project, make_project

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


@pytest.fixture
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
    (judgement,) = results["judgements"]
    left = judgement["shown_left"]
    right = "b" if left == "a" else "a"  # model names default to the manifest stems
    assert judgement["winner"] == {
        "semantic_consistency": left,
        "motion_smoothness": right,
        "video_fidelity": "tie",
    }
