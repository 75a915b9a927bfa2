"""The annotation API: assignment rules, validation, own ratings, editing, skipping, export."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from test_annotate_support import (
    DIMS,
    CliFailed,
    add_annotator,
    auth,
    cli,
    create,
    make_project,
    ratings,
    write_clip,
    write_manifest,
)
from videolift.core.jsonl import read_jsonl, write_jsonl
from videolift.core.schema import HRARecord
from videolift.data.annotate.app import create_app
from videolift.data.annotate.models import Annotation, Task, utcnow
from videolift.data.annotate.project import Project, user_for_token


@pytest.fixture
def study(tmp_path):
    project, admin = make_project(tmp_path, n=5, r=2)
    tokens = {name: add_annotator(project, name) for name in ("alice", "bob", "carol")}
    with TestClient(create_app(Project.open(project))) as client:
        yield client, project, admin, tokens


def rate_until_done(client, token, label="Bad"):
    done = []
    while (resp := client.get("/api/next", headers=auth(token))).status_code == 200:
        task = resp.json()
        assert set(task) >= {"task_id", "video_url", "prompt"}
        r = client.post(
            "/api/annotations",
            headers=auth(token),
            json={"task_id": task["task_id"], "ratings": ratings(label)},
        )
        assert r.status_code == 201, r.text
        done.append(task)
    assert resp.status_code == 204
    return done


def test_each_video_gets_r_distinct_raters_and_204_when_done(study):
    client, project, admin, tokens = study
    prompts = {name: [t["prompt"] for t in rate_until_done(client, tok)] for name, tok in tokens.items()}
    for seen in prompts.values():
        assert len(seen) == len(set(seen))  # nobody rates a video twice
    assert len(prompts["alice"]) == 5 and len(prompts["bob"]) == 5 and prompts["carol"] == []  # R=2 filled
    progress = client.get("/api/admin/progress", headers=auth(admin)).json()
    assert [row["done"] for row in progress["per_video"]] == [2] * 5
    assert progress["videos_complete"] == 5 and progress["ratings_done"] == 10


def test_next_returns_the_open_task_until_it_is_submitted(study):
    client, _, _, tokens = study
    first = client.get("/api/next", headers=auth(tokens["alice"])).json()
    assert client.get("/api/next", headers=auth(tokens["alice"])).json()["task_id"] == first["task_id"]
    me = client.get("/api/me", headers=auth(tokens["alice"])).json()
    assert me["progress"] == {"done": 0, "skipped": 0, "open": 1, "left": 4}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"semantic_consistency": {"label": "Great", "reason": "x"}}, 422, "unknown label 'Great'"),
        ({"colour": {"label": "Good"}}, 422, "unknown dimension 'colour'"),
        ({d: {"label": "Normal"} for d in DIMS}, 422, "a reason is required for Normal"),
        ({d: {"label": "Bad", "reason": "  "} for d in DIMS}, 422, "a reason is required for Bad"),
        ({d: {"label": "Bad", "reason": "\u200b\u00a0"} for d in DIMS}, 422, "a reason is required for Bad"),
        (
            {d: {"label": "Bad", "reason": "x" * 5001} for d in DIMS},
            422,
            "5001 characters long; at most 5000",
        ),
        (
            {"semantic_consistency": {"label": "Good"}},
            422,
            "missing rating for motion_smoothness, video_fidelity",
        ),
        ("Good", 422, "ratings must be an object"),
    ],
)
def test_invalid_submissions_are_refused_with_a_message(study, body, status, message):
    client, _, _, tokens = study
    task = client.get("/api/next", headers=auth(tokens["alice"])).json()
    r = client.post(
        "/api/annotations", headers=auth(tokens["alice"]), json={"task_id": task["task_id"], "ratings": body}
    )
    assert r.status_code == status and message in r.json()["detail"]
    assert client.get("/api/annotations/mine", headers=auth(tokens["alice"])).json() == []


def test_text_that_is_not_unicode_is_refused_not_stored(study):
    # A lone surrogate in JSON's \u escapes was stored, then broke "My ratings" and every export.
    client, _, _, tokens = study
    task = client.get("/api/next", headers=auth(tokens["alice"])).json()
    ratings = ", ".join(f'"{d}": {{"label": "Bad", "reason": "bad \\ud800"}}' for d in DIMS)
    raw = f'{{"task_id": {task["task_id"]}, "ratings": {{{ratings}}}}}'
    headers = {**auth(tokens["alice"]), "Content-Type": "application/json"}
    r = client.post("/api/annotations", headers=headers, content=raw.encode())
    assert r.status_code == 422 and "lone surrogate" in r.json()["detail"]
    skip = '{"reason": "\\udfff"}'
    r = client.post(f"/api/tasks/{task['task_id']}/skip", headers=headers, content=skip.encode())
    assert r.status_code == 422 and "lone surrogate" in r.json()["detail"]
    # A NUL character: stored by SQLite, a 500 on PostgreSQL; refused on both.
    r = client.post("/api/annotations", headers=headers, content=raw.replace("\\ud800", "\\u0000").encode())
    assert r.status_code == 422 and "holds a NUL character" in r.json()["detail"], r.json()
    r = client.post(f"/api/tasks/{task['task_id']}/skip", headers=headers, content=b'{"reason": "a\\u0000"}')
    assert r.status_code == 422 and "holds a NUL character" in r.json()["detail"], r.json()
    assert client.get("/api/annotations/mine", headers=auth(tokens["alice"])).json() == []


def test_good_needs_no_reason_and_labels_are_case_insensitive(study):
    client, _, _, tokens = study
    task = client.get("/api/next", headers=auth(tokens["alice"])).json()
    body = {"task_id": task["task_id"], "ratings": {d: {"label": "good"} for d in DIMS}}
    assert client.post("/api/annotations", headers=auth(tokens["alice"]), json=body).status_code == 201
    again = client.post("/api/annotations", headers=auth(tokens["alice"]), json=body)  # no duplicate
    assert (
        again.status_code == 409
        and "already saved (in another tab?): change it under My ratings" in (again.json()["detail"])
    )
    mine = client.get("/api/annotations/mine", headers=auth(tokens["alice"])).json()
    assert len(mine) == 1 and mine[0]["ratings"]["video_fidelity"] == {"label": "Good", "reason": ""}


def test_raters_cannot_read_or_change_each_others_ratings(study):
    client, _, _, tokens = study
    alice, bob = auth(tokens["alice"]), auth(tokens["bob"])
    task = client.get("/api/next", headers=alice).json()
    assert (
        client.post(
            "/api/annotations", headers=alice, json={"task_id": task["task_id"], "ratings": ratings()}
        ).status_code
        == 201
    )
    bob_task = client.get("/api/next", headers=bob).json()
    assert bob_task["task_id"] != task["task_id"]
    # Bob submitting, editing or skipping Alice's task: refused, and nothing changes.
    r = client.post(
        "/api/annotations", headers=bob, json={"task_id": task["task_id"], "ratings": ratings("Good")}
    )
    assert r.status_code == 404 and "not assigned to you" in r.json()["detail"]
    assert (
        client.put(
            f"/api/annotations/{task['task_id']}", headers=bob, json={"ratings": ratings("Good")}
        ).status_code
        == 404
    )
    assert (
        client.post(f"/api/tasks/{task['task_id']}/skip", headers=bob, json={"reason": "x"}).status_code
        == 404
    )
    assert client.get("/api/annotations/mine", headers=bob).json() == []
    r = client.post(
        "/api/annotations", headers=bob, json={"task_id": str(task["task_id"]), "ratings": ratings()}
    )
    assert r.status_code == 422 and "task_id must be an integer" in r.json()["detail"]
    assert client.get("/api/annotations/mine", headers=alice).json()[0]["ratings"] == ratings()


def test_admin_endpoints_refuse_annotator_missing_and_forged_tokens(study):
    client, _, admin, tokens = study
    for path in (
        "/api/admin/progress",
        "/api/admin/export",
        "/api/admin/agreement",
        "/api/admin/review",
        "/api/admin/pairs",
    ):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth("not-a-token")).status_code == 401
        assert client.get(path, headers=auth(tokens["alice"])).status_code == 403
        assert client.get(path, headers=auth(admin)).status_code == 200
    assert (
        client.post(
            "/api/admin/annotators", headers=auth(tokens["alice"]), json={"name": "mallory"}
        ).status_code
        == 403
    )
    assert client.get("/api/next", headers=auth(admin)).status_code == 403  # the admin is not a rater
    assert client.get("/api/next").status_code == 401


def test_edit_own_rating_and_export_shows_the_edit(study, tmp_path):
    client, project, admin, tokens = study
    alice = auth(tokens["alice"])
    task = client.get("/api/next", headers=alice).json()
    assert (
        client.put(
            f"/api/annotations/{task['task_id']}", headers=alice, json={"ratings": ratings()}
        ).status_code
        == 409
    )
    client.post(
        "/api/annotations", headers=alice, json={"task_id": task["task_id"], "ratings": ratings("Bad")}
    )
    fixed = ratings("Normal", "only a slight colour shift")
    assert (
        client.put(f"/api/annotations/{task['task_id']}", headers=alice, json={"ratings": fixed}).status_code
        == 200
    )
    out = tmp_path / "hra.jsonl"
    cli("annotate", "export", "--project", str(project), "--out", str(out))
    records = read_jsonl(out, HRARecord)
    assert len(records) == 1
    rec = records[0]
    assert (rec.video_id, rec.video, rec.annotator) == ("v/0000.mp4", "v/0000.mp4", "alice")
    assert rec.prompt == "a red square moving right #0" and rec.model_extra == {
        "seed": 0,
        "truth": {"color": "red"},
    }
    assert {d.value: r.model_dump(mode="json") for d, r in rec.ratings.items()} == fixed
    api = client.get("/api/admin/export", headers=auth(admin))
    assert api.headers["content-type"].startswith("application/x-ndjson") and api.text == out.read_text()


def test_skip_needs_a_reason_and_frees_the_slot(study):
    client, project, _, tokens = study
    project_obj = Project.open(project)
    project_obj.settings.ratings_per_video = 1
    project_obj.save_settings()
    with TestClient(create_app(Project.open(project))) as one:  # R=1: a skipped video must go to someone else
        alice, bob = auth(tokens["alice"]), auth(tokens["bob"])
        task = one.get("/api/next", headers=alice).json()
        r = one.post(f"/api/tasks/{task['task_id']}/skip", headers=alice, json={"reason": " "})
        assert r.status_code == 422 and "reason" in r.json()["detail"]
        assert one.get("/api/next", headers=bob).json()["prompt"] != task["prompt"]  # still held by alice
        assert (
            one.post(
                f"/api/tasks/{task['task_id']}/skip", headers=alice, json={"reason": "obscure prompt"}
            ).status_code
            == 200
        )
        assert (
            one.get("/api/next", headers=alice).json()["prompt"] != task["prompt"]
        )  # never the same video again
        mine = one.get("/api/annotations/mine", headers=alice).json()
        assert mine[0]["status"] == "skipped" and mine[0]["skip_reason"] == "obscure prompt"
        carol = one.get("/api/next", headers=auth(tokens["carol"])).json()
        assert carol["prompt"] == task["prompt"]


def test_the_admin_sees_who_skipped_a_video_and_why(study):
    # A skip needs a reason ("Video does not play", "Offensive content"), but no admin page, endpoint or
    # command showed it: a broken or offensive video went on being handed out, its flags unread.
    client, project, admin, tokens = study
    flagged = {}
    for name, reason in (("alice", "Video does not play"), ("bob", "Offensive content\nsee 0:02 ✋")):
        task = client.get("/api/next", headers=auth(tokens[name])).json()
        r = client.post(
            f"/api/tasks/{task['task_id']}/skip", headers=auth(tokens[name]), json={"reason": reason}
        )
        assert r.status_code == 200, r.text
        flagged.setdefault(task["prompt"], []).append({"annotator": name, "reason": reason})
    rows = client.get("/api/admin/progress", headers=auth(admin)).json()["per_video"]
    assert {row["prompt"]: row["skip_reasons"] for row in rows if row["skipped"]} == flagged
    assert all(row["skip_reasons"] == [] for row in rows if not row["skipped"])
    said = cli("annotate", "progress", "--project", str(project))
    assert "skipped (2):" in said and "\talice\tVideo does not play" in said, said


def test_expired_lease_hands_the_video_to_someone_else(study):
    client, project, _, tokens = study
    p = Project.open(project)
    alice, bob, carol = (auth(tokens[n]) for n in ("alice", "bob", "carol"))
    stale = client.get("/api/next", headers=alice).json()
    with p.session() as session:  # alice walked away three hours ago
        session.execute(
            update(Task).where(Task.id == stale["task_id"]).values(claimed_at=utcnow() - timedelta(hours=3))
        )
    # Alice's slot no longer counts: bob and carol (R=2) get her video, fullest first.
    for who in (bob, carol):
        t = client.get("/api/next", headers=who).json()
        assert t["prompt"] == stale["prompt"]
        client.post("/api/annotations", headers=who, json={"task_id": t["task_id"], "ratings": ratings()})
    r = client.post(
        "/api/annotations", headers=alice, json={"task_id": stale["task_id"], "ratings": ratings()}
    )
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    nxt = client.get("/api/next", headers=alice).json()
    assert nxt["task_id"] != stale["task_id"]
    with p.session(readonly=True) as session:
        assert session.scalar(select(Task.status).where(Task.id == stale["task_id"])) == "expired"


def test_a_lease_longer_than_the_calendar_never_runs_out(tmp_path):
    """--lease-minutes 1e10 ("never") overflowed the date of the cutoff: every rater's request was a 500."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 1)
    create(
        tmp_path / "project",
        tmp_path / "videos",
        manifest,
        "--lease-minutes",
        "1e10",
        "--ratings-per-video",
        "1",
    )
    tokens = [add_annotator(tmp_path / "project", name) for name in ("alice", "bob")]
    with TestClient(create_app(Project.open(tmp_path / "project"))) as client:
        task = client.get("/api/next", headers=auth(tokens[0])).json()
        assert client.get("/api/me", headers=auth(tokens[0])).json()["progress"]["open"] == 1
        with Project.open(tmp_path / "project").session() as session:  # claimed a century ago: still held
            old = utcnow() - timedelta(days=36500)
            session.execute(update(Task).where(Task.id == task["task_id"]).values(claimed_at=old))
        assert client.get("/api/next", headers=auth(tokens[1])).status_code == 204  # not handed to bob
        r = client.post(
            "/api/annotations",
            headers=auth(tokens[0]),
            json={"task_id": task["task_id"], "ratings": ratings()},
        )
        assert r.status_code == 201, r.text


def test_more_ratings_per_video_than_the_database_compares_are_refused(tmp_path):
    """--ratings-per-video 2**63 made a project on which every rater's request was a 500."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 1)
    with pytest.raises(
        CliFailed, match=r"--ratings-per-video: Input should be less than or equal to 1000000"
    ):
        create(tmp_path / "project", tmp_path / "videos", manifest, "--ratings-per-video", str(2**63))
    assert not (tmp_path / "project").exists()


def test_agreement_per_dimension(study):
    client, _, admin, tokens = study
    for name in ("alice", "bob"):
        tok = auth(tokens[name])
        while (resp := client.get("/api/next", headers=tok)).status_code == 200:
            t = resp.json()
            n = int(t["prompt"].rsplit("#", 1)[1])
            body = ratings("Good", "")
            body["motion_smoothness"] = {"label": ["Good", "Normal", "Bad"][n % 3], "reason": "x"}
            # semantic: raters disagree on one video out of five
            if name == "bob" and n == 0:
                body["semantic_consistency"] = {"label": "Bad", "reason": "wrong colour"}
            client.post("/api/annotations", headers=tok, json={"task_id": t["task_id"], "ratings": body})
    a = client.get("/api/admin/agreement", headers=auth(admin)).json()
    assert a["motion_smoothness"]["krippendorff_alpha"] == pytest.approx(1.0)
    assert a["motion_smoothness"]["pairwise_agreement"] == 1.0 and a["motion_smoothness"]["videos"] == 5
    assert a["semantic_consistency"]["pairwise_agreement"] == pytest.approx(0.8)
    assert (
        a["semantic_consistency"]["krippendorff_alpha"] < 0.1
    )  # almost all Good: one disagreement ruins alpha


def test_tokens_are_stored_hashed_and_can_be_reissued(study):
    client, project, admin, tokens = study
    db = (project / "annotate.db").read_bytes()
    for token in [admin, *tokens.values()]:
        assert token.encode() not in db
    with pytest.raises(CliFailed, match="already exists"):
        add_annotator(project, "alice")
    new = cli("annotate", "add-annotator", "alice", "--project", str(project), "--reissue")
    assert client.get("/api/me", headers=auth(tokens["alice"])).status_code == 401
    assert client.get("/api/me", headers=auth(new)).json()["name"] == "alice"
    refused = client.post("/api/admin/annotators", headers=auth(admin), json={"name": ["dave"]})
    assert refused.status_code == 422 and "expected a string" in refused.json()["detail"]
    r = client.post("/api/admin/annotators", headers=auth(admin), json={"name": "dave"})
    assert (
        r.status_code == 201
        and client.get("/api/me", headers=auth(r.json()["token"])).json()["role"] == "annotator"
    )


def test_a_rater_name_in_square_brackets_is_printed_as_it_is(tmp_path):
    """The annotate commands printed names as rich markup: add-annotator "[/x]" stored the rater, then
    crashed on a MarkupError before the token (shown once) was printed; "[b]x" was shown as "x"."""
    project, _ = make_project(tmp_path, n=1, r=1)
    for name in ("[/x]", "[b]y"):
        token = add_annotator(project, name)  # CliFailed before
        with Project.open(project).session(readonly=True) as session:
            assert user_for_token(session, token).name == name
    shown = cli("annotate", "progress", "--project", str(project))
    assert "[/x]" in shown and "[b]y" in shown


def test_a_manifest_field_named_adjudicated_is_not_carried_into_rater_records(tmp_path):
    # It marks an admin's review in an export: carried along, every rater's record would pass for one.
    from videolift.core.jsonl import write_jsonl
    from videolift.data.annotate.videos import extra_fields, read_manifest

    (tmp_path / "0.mp4").write_bytes(b"")
    write_jsonl(
        tmp_path / "m.jsonl", [{"video": "0.mp4", "prompt": "a red square", "adjudicated": True, "seed": 3}]
    )
    [(_, entry, _)] = read_manifest(tmp_path / "m.jsonl", tmp_path.resolve())
    assert extra_fields(entry) == {"seed": 3}


def test_an_edit_from_a_stale_form_does_not_overwrite_a_newer_one(study):
    # Two tabs open the same rating for editing; the second to save must not silently undo the first.
    client, _, _, tokens = study
    alice = auth(tokens["alice"])
    task = client.get("/api/next", headers=alice).json()["task_id"]
    client.post("/api/annotations", headers=alice, json={"task_id": task, "ratings": ratings("Bad")})
    (opened,) = client.get("/api/annotations/mine", headers=alice).json()
    first = {"ratings": ratings("Normal", "tab one"), "updated_at": opened["updated_at"]}
    assert client.put(f"/api/annotations/{task}", headers=alice, json=first).status_code == 200
    stale = {"ratings": ratings("Good"), "updated_at": opened["updated_at"]}
    r = client.put(f"/api/annotations/{task}", headers=alice, json=stale)
    assert r.status_code == 409 and "after you opened it" in r.json()["detail"]
    (now,) = client.get("/api/annotations/mine", headers=alice).json()
    assert now["ratings"]["video_fidelity"] == {"label": "Normal", "reason": "tab one"}
    again = {"ratings": ratings("Good"), "updated_at": now["updated_at"]}  # reloaded: saves
    assert client.put(f"/api/annotations/{task}", headers=alice, json=again).status_code == 200


def test_a_bad_stored_rating_is_named_by_annotator_and_task_on_export(study):
    # The export named only the video: with R raters per video, which rating to fix was left to guess.
    client, project, _, tokens = study
    task = client.get("/api/next", headers=auth(tokens["bob"])).json()["task_id"]
    client.post("/api/annotations", headers=auth(tokens["bob"]), json={"task_id": task, "ratings": ratings()})
    with Project.open(project).session() as session:  # e.g. written by an older version or by hand
        session.execute(
            update(Annotation).where(Annotation.task_id == task).values(result={"semantic_consistency": 1})
        )
    with pytest.raises(CliFailed, match=f"video 'v/0000.mp4' \\(annotator 'bob', task {task}\\) cannot be"):
        cli("annotate", "export", "--project", str(project), "--out", str(project.parent / "hra.jsonl"))


def _clip(path, fmt: str, codec: str, pix_fmt: str) -> None:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = pix_fmt
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_videos_browsers_do_not_play_are_refused_unless_allowed(tmp_path):
    """FFmpeg reads GIFs and MJPEG AVIs, but raters' browsers do not: they found only "does not play"."""
    root = tmp_path / "videos"
    root.mkdir()
    _clip(root / "a.gif", "gif", "gif", "rgb8")
    _clip(root / "b.avi", "avi", "mjpeg", "yuvj420p")
    write_clip(root / "c.mp4")
    # what browsers do play: AV1 (decoded by "libdav1d"), VP9 in WebM, H.264 in MKV and lossless 4:4:4
    from videolift.core.video import browser_problem, write_video

    _clip(root / "av1.mp4", "mp4", "libsvtav1", "yuv420p")
    _clip(root / "vp9.webm", "webm", "libvpx-vp9", "yuv420p")
    _clip(root / "h264.mkv", "matroska", "libx264", "yuv420p")
    write_video(root / "lossless.mp4", np.zeros((5, 32, 32, 3), np.uint8), fps=8, crf=0, pix_fmt="yuv444p")
    for name in ("av1.mp4", "vp9.webm", "h264.mkv", "lossless.mp4", "c.mp4"):
        assert browser_problem(root / name) is None, name
    write_jsonl(tmp_path / "m.jsonl", [{"video": v, "prompt": v} for v in ("c.mp4", "a.gif")])
    with pytest.raises(
        CliFailed, match=r"m\.jsonl, line 2, field 'video': a\.gif: GIF container, which browsers do not play"
    ):
        create(tmp_path / "p", root, tmp_path / "m.jsonl")
    assert not (tmp_path / "p").exists()  # nothing half-created
    create(tmp_path / "p", root, tmp_path / "m.jsonl", "--allow-unplayable")
    write_jsonl(tmp_path / "n.jsonl", [{"video": "b.avi", "prompt": "b"}])
    add = [
        "annotate",
        "add-videos",
        "--project",
        str(tmp_path / "p"),
        "--manifest",
        str(tmp_path / "n.jsonl"),
    ]
    with pytest.raises(CliFailed, match=r"b\.avi: AVI container"):
        cli(*add)
    cli(*add, "--allow-unplayable")


def test_add_videos_with_dir_finds_ids_clashing_once_the_folder_is_put_before_the_paths(tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    write_clip(root / "sub/a.mp4")
    write_clip(root / "sub/b.mp4", shade=9)
    write_clip(root / "c.mp4", shade=50)
    write_jsonl(tmp_path / "first.jsonl", [{"video": "c.mp4", "prompt": "c"}])
    create(tmp_path / "p", root, tmp_path / "first.jsonl")
    add = [
        "annotate",
        "add-videos",
        "--project",
        str(tmp_path / "p"),
        "--dir",
        str(root / "sub"),
        "--manifest",
    ]
    clash = [{"video": "a.mp4", "prompt": "p"}, {"video": "b.mp4", "video_id": "sub/a.mp4", "prompt": "q"}]
    write_jsonl(tmp_path / "m.jsonl", clash)  # both would be stored as sub/a.mp4
    with pytest.raises(CliFailed, match=r"line 2, field 'video_id': 'sub/a.mp4' already on line 1"):
        cli(*add, str(tmp_path / "m.jsonl"))
    write_jsonl(
        tmp_path / "m.jsonl", [clash[0], {**clash[1], "video_id": "a.mp4"}]
    )  # stored: sub/a.mp4, a.mp4
    cli(*add, str(tmp_path / "m.jsonl"))


def test_my_ratings_take_the_same_few_queries_however_many_there_are(tmp_path):
    """They were three queries a task: a rater with 3,000 ratings waited a second for the list."""
    from sqlalchemy import event

    project_dir, _ = make_project(tmp_path, n=12, r=1)
    token = add_annotator(project_dir, "alice")
    project = Project.open(project_dir)
    counting, queries = [False], []

    def count(*_args) -> None:
        if counting[0]:
            queries.append(1)

    for engine in {project.engine, project._reads}:
        event.listen(engine, "before_cursor_execute", count)
    seen = []
    with TestClient(create_app(project)) as client:
        for _ in range(2):
            for _ in range(6):
                task = client.get("/api/next", headers=auth(token)).json()
                body = {"task_id": task["task_id"], "ratings": ratings()}
                assert client.post("/api/annotations", json=body, headers=auth(token)).status_code == 201
            counting[0], queries[:] = True, []
            mine = client.get("/api/annotations/mine", headers=auth(token)).json()
            counting[0] = False
            seen.append((len(mine), len(queries)))
    (six, first), (twelve, second) = seen
    assert (six, twelve) == (6, 12) and first == second <= 6


def test_export_lists_ratings_in_manifest_order_then_by_annotator(tmp_path):
    """The HRA export is v1/alice, v1/bob, v2/alice, v2/bob however the ratings came in."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 2)
    manifest.write_text("".join(reversed(manifest.read_text().splitlines(keepends=True))))  # v1: 0001
    project = tmp_path / "project"
    admin = create(project, tmp_path / "videos", manifest, "--ratings-per-video", "2")
    tokens = {name: add_annotator(project, name) for name in ("bob", "alice")}  # bob: added first
    with TestClient(create_app(Project.open(project))) as client:
        for name in tokens:  # and submits first
            rate_until_done(client, tokens[name])
        export = client.get("/api/admin/export", headers=auth(admin)).text
    records = [HRARecord.model_validate_json(line) for line in export.splitlines()]
    assert [(r.video_id, r.annotator) for r in records] == [
        ("v/0001.mp4", "alice"),
        ("v/0001.mp4", "bob"),
        ("v/0000.mp4", "alice"),
        ("v/0000.mp4", "bob"),
    ]
