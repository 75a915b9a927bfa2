"""Many raters at once against a real server on loopback: nothing lost, nothing stored twice, R never exceeded."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from test_annotate_support import Server, auth, make_project, ratings
from videolift.core.schema import HRARecord
from videolift.data.annotate.project import Project, add_user


def add_raters(project, n: int) -> list[str]:
    with Project.open(project).session() as session:  # in one transaction: faster than n CLI calls
        return [add_user(session, f"rater{i:02d}") for i in range(n)]


def rater(url: str, token: str, limit: int | None) -> dict[str, int]:
    """Rate until ``limit`` submissions (or until nothing is left); double-submit the first task."""
    counts = Counter()
    with httpx.Client(base_url=url, headers=auth(token), timeout=60) as client:
        while limit is None or counts[201] < limit:
            resp = client.get("/api/next")
            if resp.status_code == 204:
                break
            resp.raise_for_status()
            body = {"task_id": resp.json()["task_id"], "ratings": ratings("Normal", "slightly blurry")}
            counts[client.post("/api/annotations", json=body).status_code] += 1
            if counts[201] == 1 and counts[409] == 0:
                counts[client.post("/api/annotations", json=body).status_code] += 1  # a double click
    return counts


def run_raters(url: str, tokens: list[str], limit: int | None) -> Counter:
    total = Counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        for counts in pool.map(lambda tok: rater(url, tok, limit), tokens, timeout=240):
            total += counts
    return total


def exported(url: str, admin: str) -> list[HRARecord]:
    text = httpx.get(url + "/api/admin/export", headers=auth(admin), timeout=60).text
    return [HRARecord.model_validate(json.loads(line)) for line in text.splitlines()]


def test_50_raters_submitting_20_each_store_exactly_1000(tmp_path):
    project, admin = make_project(tmp_path, 100, 12)  # room for 1200 ratings
    tokens = add_raters(project, 50)
    with Server(project) as server:
        start = time.monotonic()
        total = run_raters(server.url, tokens, 20)
        elapsed = time.monotonic() - start
        records = exported(server.url, admin)
    print(f"1000 ratings from 50 concurrent raters in {elapsed:.1f} s")
    assert total == {201: 1000, 409: 50}  # every double submit refused
    assert len(records) == 1000
    assert len({(r.video_id, r.annotator) for r in records}) == 1000  # nobody rated a video twice
    assert Counter(r.annotator for r in records) == {f"rater{i:02d}": 20 for i in range(50)}
    assert max(Counter(r.video_id for r in records).values()) <= 12


def test_more_raters_than_slots_fill_every_video_exactly_r_times(tmp_path):
    project, admin = make_project(tmp_path, 10, 3)  # 30 slots, 20 raters who want as many as they can get
    tokens = add_raters(project, 20)
    with Server(project) as server:
        total = run_raters(server.url, tokens, None)
        records = exported(server.url, admin)
    assert total[201] == 30 and len(records) == 30
    assert Counter(r.video_id for r in records) == {f"v/{i:04d}.mp4": 3 for i in range(10)}
    assert len({(r.video_id, r.annotator) for r in records}) == 30
