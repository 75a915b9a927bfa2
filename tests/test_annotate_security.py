"""Video serving cannot leave the videos root; bad manifests are refused before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

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
from videolift.core.jsonl import write_jsonl
from videolift.data.annotate import admin_routes
from videolift.data.annotate import app as app_module
from videolift.data.annotate.app import SECURITY_HEADERS, create_app
from videolift.data.annotate.project import Project
from videolift.data.annotate.videos import UnsafePath, resolve_video


def test_resolve_video_refuses_paths_out_of_the_root(tmp_path):
    root = (tmp_path / "videos").resolve()
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.mp4").write_bytes(b"secret")
    (root / "sub" / "ok.mp4").write_bytes(b"ok")
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    (root / "inner.mp4").symlink_to(root / "sub" / "ok.mp4")
    assert resolve_video(root, "sub/ok.mp4") == root / "sub" / "ok.mp4"
    assert resolve_video(root, "inner.mp4") == root / "sub" / "ok.mp4"  # a symlink inside the root is fine
    for bad in (
        "../secret.mp4",
        "sub/../../secret.mp4",
        str(tmp_path / "secret.mp4"),
        "/etc/passwd",
        "link.mp4",
        "..\\secret.mp4",
        "",
        "sub/ok.mp4\x00",
    ):
        with pytest.raises(UnsafePath):
            resolve_video(root, bad)


@pytest.mark.parametrize("video", ["../outside.mp4", "ABSOLUTE", "link.mp4"])
def test_create_refuses_manifest_paths_out_of_the_root(tmp_path, video):
    root = tmp_path / "videos"
    root.mkdir()
    write_clip(tmp_path / "outside.mp4")
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    video = str(tmp_path / "outside.mp4") if video == "ABSOLUTE" else video
    manifest = tmp_path / "m.jsonl"
    write_jsonl(manifest, [{"video": video, "prompt": "p"}])
    with pytest.raises(CliFailed, match="line 1, field 'video'"):
        create(tmp_path / "p", root, manifest)
    assert not (tmp_path / "p").exists()  # nothing half-created: create can be rerun


def test_create_reports_missing_and_duplicate_videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_clip(root / "a.mp4")
    manifest = tmp_path / "m.jsonl"
    write_jsonl(manifest, [{"video": "a.mp4", "prompt": "p"}, {"video": "b.mp4", "prompt": "q"}])
    with pytest.raises(CliFailed, match=r"line 2, field 'video'.*not found"):
        create(tmp_path / "p", root, manifest)
    (root / "folder.mp4").mkdir()  # a folder is named as one, not as missing
    write_jsonl(manifest, [{"video": "folder.mp4", "prompt": "p"}])
    with pytest.raises(
        CliFailed, match=r"line 1, field 'video': video .*folder\.mp4 is a directory, not a video"
    ):
        create(tmp_path / "p", root, manifest)
    write_jsonl(manifest, [{"video": "a.mp4", "prompt": "p"}, {"video": "a.mp4", "prompt": "q"}])
    with pytest.raises(CliFailed, match="line 2, field 'video': 'a.mp4' already on line 1"):
        create(tmp_path / "p", root, manifest)
    write_jsonl(manifest, [{"video": "a.mp4", "prompt": "   "}])
    with pytest.raises(CliFailed, match="line 1, field 'prompt': missing or empty"):
        create(tmp_path / "p", root, manifest)
    write_clip(root / "b.mp4")
    two = [
        {"video": "a.mp4", "video_id": "x", "prompt": "p"},
        {"video": "b.mp4", "video_id": "x", "prompt": "q"},
    ]
    write_jsonl(manifest, two)
    with pytest.raises(CliFailed, match="line 2, field 'video_id': 'x' already on line 1"):
        create(tmp_path / "p", root, manifest)


def test_create_takes_an_integer_or_null_video_id_as_critic_score_and_toy_rate_do(tmp_path):
    from sqlalchemy import select

    from videolift.data.annotate.models import Video

    root = tmp_path / "videos"
    root.mkdir()
    write_clip(root / "a.mp4")
    write_clip(root / "b.mp4")
    manifest = tmp_path / "m.jsonl"
    write_jsonl(
        manifest,
        [
            {"video": "a.mp4", "video_id": 7, "prompt": "p"},
            {"video": "b.mp4", "video_id": None, "prompt": "q"},
        ],
    )
    create(tmp_path / "p", root, manifest)  # refused before: "Input should be a valid string"
    with Project.open(tmp_path / "p").session(readonly=True) as session:
        assert session.scalars(select(Video.video_id).order_by(Video.position)).all() == ["7", "b.mp4"]


def test_create_never_touches_a_ratings_database_it_did_not_make(tmp_path):
    """A project whose project.json went missing still holds its ratings in annotate.db: create used to
    reuse it, fail on the existing admin, and delete it while cleaning up after itself."""
    project, _ = make_project(tmp_path, n=2, r=1)
    (project / "project.json").rename(tmp_path / "project.json.moved")
    # create closed its database: the write-ahead log is folded in now, not when the garbage collector
    # drops the engine (which made this comparison flaky), so annotate.db alone holds the project.
    assert not (project / "annotate.db-wal").exists()
    before = (project / "annotate.db").read_bytes()
    with pytest.raises(CliFailed, match=r"already holds a project \(annotate.db\)"):
        create(project, tmp_path / "videos")
    assert (project / "annotate.db").read_bytes() == before


def test_media_urls_are_opaque_and_cannot_escape_the_root(tmp_path):
    project, _ = make_project(tmp_path, n=2, r=1)
    (tmp_path / "secret.txt").write_text("secret")
    token = add_annotator(project, "alice")
    with TestClient(create_app(Project.open(project))) as client:
        task = client.get("/api/next", headers=auth(token)).json()
        url = task["video_url"]
        assert "v/0000" not in url and url.startswith("/media/")  # the file path is not revealed
        ok = client.get(url)
        assert ok.status_code == 200 and ok.headers["content-type"] == "video/mp4"
        for probe in (
            "/media/../../secret.txt",
            "/media/..%2F..%2Fsecret.txt",
            "/media/%2e%2e%2fsecret.txt",
            f"/media/{tmp_path}/secret.txt",
            "/media/v%2F0000.mp4",
            "/static/../../../secret.txt",
            "/static/..%2F..%2F..%2Fsecret.txt",
        ):
            r = client.get(probe)
            assert r.status_code == 404 and b"secret" not in r.content, probe
        # The file is swapped for a symlink out of the root after import: refused at serving time.
        clip = tmp_path / "videos" / "v" / "0000.mp4"
        clip.unlink()
        clip.symlink_to(tmp_path / "secret.txt")
        r = client.get(url)
        assert r.status_code == 404 and b"secret" not in r.content


def test_pages_carry_security_headers(tmp_path):
    project, _ = make_project(tmp_path, n=1, r=1)
    with TestClient(create_app(Project.open(project))) as client:
        r = client.get("/")
        assert r.status_code == 200 and "<title>videolift" in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        # Nothing served that loads from the internet (FastAPI's Swagger page pulls a CDN's scripts).
        assert client.get("/api/docs").status_code == 404
        assert client.get("/api/openapi.json").json()["info"]["title"] == "videolift annotate"
        static = Path(__file__).parents[1] / "src/videolift/data/annotate/static"
        assert not [
            f for f in static.rglob("*") if f.is_file() and "https://" in f.read_text(errors="ignore")
        ]


@pytest.mark.parametrize("command", ["export", "export-pairs", "review"])
@pytest.mark.parametrize("name", ["annotate.db", "project.json"])
def test_an_output_over_the_projects_own_files_is_refused(tmp_path, command, name):
    project, _ = make_project(tmp_path, n=2, r=1)
    before = {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()}
    with pytest.raises(CliFailed, match=f"--out {project / name} is also the project's (database )?{name}"):
        cli("annotate", command, "--project", str(project), "--out", str(project / name))
    assert {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()} == before  # all ratings kept


def test_an_output_over_a_database_given_at_create_is_refused(tmp_path):
    db = tmp_path / "ratings.db"
    (tmp_path / "videos").mkdir()
    create(tmp_path / "p", tmp_path / "videos", None, "--db", f"sqlite:///{db}")
    before = db.read_bytes()
    with pytest.raises(CliFailed, match="is also the project's database ratings.db"):
        cli("annotate", "export", "--project", str(tmp_path / "p"), "--out", str(db))
    assert db.read_bytes() == before


def test_a_database_that_cannot_be_opened_is_named_and_create_leaves_nothing(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "not.db").write_bytes(b"not a database" * 100)
    with pytest.raises(
        CliFailed, match=r"not\.db: cannot open the project's database \(file is not a database\)"
    ):
        create(tmp_path / "p", tmp_path / "videos", None, "--db", f"sqlite:///{tmp_path / 'not.db'}")
    assert not (tmp_path / "p").exists()
    project, _ = make_project(tmp_path / "q", n=1, r=1)  # project.json naming a driver not installed here
    settings = json.loads((project / "project.json").read_text()) | {
        "db": "postgresql+nodriver://u:secret@h/db"
    }
    (project / "project.json").write_text(json.dumps(settings))
    with pytest.raises(CliFailed, match="cannot open the project's database") as info:
        cli("annotate", "progress", "--project", str(project))
    assert "secret" not in str(info.value)


def test_a_database_that_is_not_one_is_named_not_a_traceback(tmp_path):
    project, _ = make_project(tmp_path, n=1, r=1)
    (project / "annotate.db").write_bytes(b"not a database" * 100)  # e.g. a file copied over it
    with pytest.raises(
        CliFailed, match=r"annotate\.db: cannot open the project's database \(file is not a database\)"
    ):
        cli("annotate", "progress", "--project", str(project))


def test_large_bodies_are_refused_before_they_are_read(tmp_path, monkeypatch):
    # A 50 MB POST without a token was read into memory in full before its 401.
    project, admin = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "alice")
    with TestClient(create_app(Project.open(project))) as client:
        big = b"x" * (app_module.MAX_BODY + 1)
        r = client.post("/api/annotations", content=big)  # no token: the size is refused first
        assert r.status_code == 413
        assert r.json()["detail"] == "request body too large: 1,048,577 bytes; at most 1,048,576 bytes here"
        assert r.headers["x-content-type-options"] == "nosniff"
        chunked = client.post("/api/annotations", headers=auth(token), content=iter([big[:9], big[9:]]))
        assert chunked.status_code == 413 and "at most 1,048,576 bytes" in chunked.json()["detail"]
        # Critic scores are a whole file: the upload has its own, larger cap.
        line = {
            "video": "v/0000.mp4",
            "ratings": {d: {"label": "Good", "reason": "", "score": 1} for d in DIMS},
        }
        scores = json.dumps(line).encode() + b"\n"
        monkeypatch.setattr(app_module, "MAX_BODY", 20)
        assert client.post("/api/admin/critic", headers=auth(admin), content=scores).json()["matched"] == 1
        monkeypatch.setattr(app_module, "MAX_UPLOAD", 20)
        r = client.post("/api/admin/critic", headers=auth(admin), content=scores)
        assert r.status_code == 413 and "at most 20 bytes" in r.json()["detail"]


def test_a_critic_upload_is_not_stored_before_its_token_is_checked(tmp_path, monkeypatch):
    project, _ = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "alice")

    def no_store(*args, **kwargs):
        raise AssertionError("the body was stored before the token was checked")

    monkeypatch.setattr(admin_routes.tempfile, "TemporaryDirectory", no_store)
    with TestClient(create_app(Project.open(project))) as client:
        assert client.post("/api/admin/critic", content=b"{}\n").status_code == 401
        assert client.post("/api/admin/critic", headers=auth(token), content=b"{}\n").status_code == 403
        # nor is its folder looked up: without the admin's token, what lies under the videos root stays unsaid
        assert client.post("/api/admin/critic?dir=../x", content=b"{}\n").status_code == 401
        assert client.post("/api/admin/critic?dir=../x", headers=auth(token), content=b"").status_code == 403


def test_a_database_locked_past_its_timeout_is_a_503_and_reads_still_answer(tmp_path, monkeypatch):
    """A writer holding SQLite's lock (e.g. a sqlite3 shell left in a transaction): writers get a JSON 503
    to retry, not a bare 500, and reads (pages, progress, videos) keep their own connections."""
    import sqlite3

    import sqlalchemy.exc

    from videolift.data.annotate import project as project_module
    from videolift.data.annotate import tasks

    monkeypatch.setattr(project_module, "BUSY_TIMEOUT_MS", 200)
    project, _ = make_project(tmp_path, n=2, r=1)
    token = add_annotator(project, "alice")
    with TestClient(create_app(Project.open(project))) as client:
        url = client.get("/api/next", headers=auth(token)).json()["video_url"]
        holder = sqlite3.connect(project / "annotate.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            busy = client.get("/api/next", headers=auth(token))
            assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
            assert "database is locked" in busy.json()["detail"]
            assert client.get("/api/me", headers=auth(token)).status_code == 200
            assert client.get(url).status_code == 200
            # A request without a valid token is refused before it would queue for the write lock.
            forged = client.post("/api/annotations", json={"task_id": 1}, headers=auth("forged"))
            assert forged.status_code == 401
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert client.get("/api/next", headers=auth(token)).status_code == 200

    # Any other database failure is no "try again": a 500, logged by the server.
    def full(*_args, **_kwargs):
        raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(tasks, "next_task", full)
    with TestClient(create_app(Project.open(project)), raise_server_exceptions=False) as client:
        crashed = client.get("/api/next", headers=auth(token))
        assert crashed.status_code == 500 and crashed.json() == {"detail": "Internal Server Error"}
        # Starlette answers it outside every middleware: the handler adds the security headers itself
        assert all(crashed.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


def test_out_of_range_ids_and_non_boolean_reissue_are_client_errors(tmp_path):
    project, admin = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "alice")
    huge = 2**70  # beyond SQLite's integers: the query itself failed with a 500
    with TestClient(create_app(Project.open(project))) as client:
        body = {"task_id": huge, "ratings": ratings()}
        assert client.post("/api/annotations", json=body, headers=auth(token)).status_code == 404
        assert client.put(f"/api/annotations/{huge}", json=body, headers=auth(token)).status_code == 404
        assert (
            client.post(f"/api/tasks/{huge}/skip", json={"reason": "x"}, headers=auth(token)).status_code
            == 404
        )
        # "false" as a string is true to Python: it revoked alice's token.
        r = client.post(
            "/api/admin/annotators", json={"name": "alice", "reissue": "false"}, headers=auth(admin)
        )
        assert r.status_code == 422 and "reissue" in r.json()["detail"]
        assert client.get("/api/me", headers=auth(token)).status_code == 200
        # A lone surrogate in a name is refused, not stored to break every page that shows it.
        headers = auth(admin) | {"Content-Type": "application/json"}
        r = client.post("/api/admin/annotators", content='{"name": "x\\ud800"}', headers=headers)
        assert r.status_code == 400 and "lone surrogate" in r.json()["detail"]
        r = client.post("/api/admin/annotators", content='{"name": "x\\u0000"}', headers=headers)
        assert r.status_code == 400 and "NUL character" in r.json()["detail"], r.json()


def test_media_responses_do_not_say_when_a_video_was_written(tmp_path):
    """In a pairwise study the second model's videos are newer: Last-Modified would tell them apart."""
    project, _ = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "alice")
    with TestClient(create_app(Project.open(project))) as client:
        url = client.get("/api/next", headers=auth(token)).json()["video_url"]
        first = client.get(url)
        assert first.status_code == 200 and "last-modified" not in first.headers and first.headers["etag"]
        # A player's or proxy's HEAD gets the same headers without the body (it was a 405).
        head = client.head(url)
        assert head.status_code == 200 and head.content == b"" and "last-modified" not in head.headers
        assert head.headers["content-length"] == first.headers["content-length"] != "0"
        assert head.headers["etag"] == first.headers["etag"]
        assert client.head("/media/nope").status_code == 404
    # Nor does the ETag: Starlette's is the MD5 of "mtime-size", which a search over a day's times undoes.
    import hashlib

    stat = (tmp_path / "videos" / "v" / "0000.mp4").stat()
    starlettes = hashlib.md5(f"{stat.st_mtime}-{stat.st_size}".encode()).hexdigest()
    assert first.headers["etag"] != f'"{starlettes}"'


def test_a_critic_upload_dir_with_a_nul_byte_is_a_400(tmp_path):
    project, admin = make_project(tmp_path, n=1, r=1)
    with TestClient(create_app(Project.open(project))) as client:  # a ValueError out of resolve(): a 500
        r = client.post("/api/admin/critic", params={"dir": "v\x00"}, headers=auth(admin), content=b"{}\n")
        assert (
            r.status_code == 400
            and r.json()["detail"].startswith("dir: ")
            and "NUL byte" in r.json()["detail"]
        )


def test_a_critic_upload_cut_off_is_a_400_not_a_crash(tmp_path):
    """A client that leaves mid-upload raised ClientDisconnect out of the route: a traceback in the log."""
    import asyncio

    project, admin = make_project(tmp_path, n=1, r=1)
    app = create_app(Project.open(project))
    incoming = [
        {"type": "http.request", "body": b'{"video": "v/0000.mp4", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/admin/critic",
        "raw_path": b"/api/admin/critic",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {admin}".encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert b"the upload was cut off" in b"".join(m.get("body", b"") for m in sent[1:])


def test_if_range_is_answered_by_the_etag_alone(tmp_path):
    """A browser resuming a cached video sends If-Range: it was a 500 (Starlette compared it with the
    Last-Modified the app removes); a date must not match either, or it would give the file's time away."""
    from email.utils import formatdate

    project, _ = make_project(tmp_path, n=1, r=1)
    token = add_annotator(project, "alice")
    with TestClient(create_app(Project.open(project))) as client:
        url = client.get("/api/next", headers=auth(token)).json()["video_url"]
        whole = client.get(url)
        written = formatdate((tmp_path / "videos" / "v" / "0000.mp4").stat().st_mtime, usegmt=True)
        same = client.get(url, headers={"Range": "bytes=0-9", "If-Range": whole.headers["etag"]})
        assert same.status_code == 206 and same.content == whole.content[:10]
        assert same.headers["content-range"] == f"bytes 0-9/{len(whole.content)}"
        for other in (written, '"another"', "W/" + whole.headers["etag"]):
            r = client.get(url, headers={"Range": "bytes=0-9", "If-Range": other})
            assert r.status_code == 200 and r.content == whole.content, other
            assert "last-modified" not in r.headers and "content-range" not in r.headers


def test_a_bad_critic_upload_names_the_upload_not_the_servers_temporary_file(tmp_path):
    project, admin = make_project(tmp_path, n=1, r=1)
    with TestClient(create_app(Project.open(project))) as client:
        for body, where in [
            (
                b'{"video": "v/0000.mp4", "ratings": {}}\n{oops\n',
                "the uploaded scores, line 2: malformed JSON",
            ),
            (b'{"video": "v/0000.mp4", "ratings": 3}\n', "the uploaded scores, line 1, field 'ratings'"),
            (b"\xff\n", "the uploaded scores, line 1: not UTF-8"),
        ]:
            r = client.post("/api/admin/critic", headers=auth(admin), content=body)
            assert r.status_code == 400 and r.json()["detail"].startswith(where), r.json()
            assert "critic_scores.jsonl" not in r.json()["detail"]


def test_create_that_cannot_write_its_guideline_leaves_nothing_and_can_be_rerun(tmp_path, monkeypatch):
    import errno

    from videolift.data.annotate import guideline

    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 2)
    write_default = guideline.write_default

    def full(directory: Path) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / "guideline.yaml"))

    monkeypatch.setattr(guideline, "write_default", full)
    with pytest.raises(CliFailed, match=r"guideline\.yaml: No space left on device"):
        create(tmp_path / "p", tmp_path / "videos", manifest)
    assert not (tmp_path / "p").exists()  # no database or settings a rerun would call a project
    monkeypatch.setattr(guideline, "write_default", write_default)
    assert create(tmp_path / "p", tmp_path / "videos", manifest)  # the admin token
