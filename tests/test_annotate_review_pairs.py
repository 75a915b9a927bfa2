"""Model-assisted review (critic vs raters, adjudication) and the pairwise study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from test_annotate_support import (
    DIMS,
    CliFailed,
    add_annotator,
    auth,
    cli,
    create,
    make_pair_project,
    make_project,
    ratings,
    runner,
    write_manifest,
)
from videolift.cli import app
from videolift.core.jsonl import read_jsonl
from videolift.core.schema import HRARecord
from videolift.data.annotate.admin import disagreements
from videolift.data.annotate.app import create_app
from videolift.data.annotate.models import CriticScore, Pair, Task, Video
from videolift.data.annotate.project import Project


def test_review_lists_critic_disagreements_and_exports_adjudications(tmp_path):
    project, admin = make_project(tmp_path, n=3, r=2)
    tokens = [add_annotator(project, n) for n in ("alice", "bob")]
    with TestClient(create_app(Project.open(project))) as client:
        for tok in tokens:  # raters: every video Good on all dimensions
            while (resp := client.get("/api/next", headers=auth(tok))).status_code == 200:
                client.post(
                    "/api/annotations",
                    headers=auth(tok),
                    json={"task_id": resp.json()["task_id"], "ratings": ratings("Good")},
                )
        critic = tmp_path / "critic.jsonl"
        lines = []
        for i, label in enumerate(["Good", "Normal", "Bad"]):
            rating = {d: {"label": "Good", "reason": "", "score": 0.9} for d in DIMS}
            rating["motion_smoothness"] = {"label": label, "reason": f"critic says {label}", "score": 0.5}
            lines.append({"video": f"v/{i:04d}.mp4", "prompt": "p", "ratings": rating, "reward": 0.5})
        lines[0]["ratings"]["video_fidelity"] = {
            "label": None,
            "reason": "",
            "score": None,
            "answer": "hmm",
        }  # unparsed
        lines.append(
            {"video": "elsewhere.mp4", "prompt": "p", "ratings": {}, "reward": None, "error": "unreadable"}
        )
        critic.write_text("".join(json.dumps(x) + "\n" for x in lines))
        cli("annotate", "import-critic", str(critic), "--project", str(project), "--critic", "tiny")
        again = client.post("/api/admin/critic?critic=tiny", headers=auth(admin), content=critic.read_bytes())
        # replaces, no duplicates; the same videos: no earlier score dropped
        assert again.json() == {"matched": 3, "unmatched": 1, "unparsed": 1, "dropped": 0}
        review = client.get("/api/admin/review", headers=auth(admin)).json()
        assert review["critics"] == ["tiny"]
        # Good vs Good: agreement; Normal is one rank away (listed at min_gap 1); Bad is two (listed first).
        assert [item["video_id"] for item in review["items"]] == ["v/0002.mp4", "v/0001.mp4"]
        top = review["items"][0]["dimensions"]["motion_smoothness"]
        assert top["gap"] == 2 and top["critic"]["reason"] == "critic says Bad" and len(top["raters"]) == 2
        assert [
            i["video_id"]
            for i in client.get("/api/admin/review?min_gap=2", headers=auth(admin)).json()["items"]
        ] == ["v/0002.mp4"]
        fixed = ratings("Good", "")
        fixed["motion_smoothness"] = {"label": "Bad", "reason": "the square jumps at frame 5"}
        r = client.put("/api/admin/review/v/0002.mp4", headers=auth(admin), json={"ratings": fixed})
        assert r.status_code == 200
        assert (
            client.put(
                "/api/admin/review/v/0002.mp4", headers=auth(tokens[0]), json={"ratings": fixed}
            ).status_code
            == 403
        )
        assert (
            client.put("/api/admin/review/nope", headers=auth(admin), json={"ratings": fixed}).status_code
            == 404
        )
    out = tmp_path / "hra.jsonl"
    cli("annotate", "export", "--project", str(project), "--out", str(out), "--with-reviews")
    records = read_jsonl(out, HRARecord)
    assert len(records) == 7
    adjudicated = [r for r in records if r.model_extra.get("adjudicated")]
    assert len(adjudicated) == 1 and adjudicated[0].annotator == "review:admin"
    assert adjudicated[0].ratings["motion_smoothness"].reason == "the square jumps at frame 5"
    # `hra stats` on the export agrees with the admin's agreement: the review is not another rater.
    from videolift.data.annotate.admin import agreement
    from videolift.data.stats import dataset_stats

    summary = dataset_stats(records)
    raters = [r for r in records if not r.model_extra.get("adjudicated")]
    assert summary["adjudicated_records"] == 1 and summary["records"] == 7
    assert summary["annotators"] == len({r.annotator for r in raters})
    for dim, expected in agreement(raters).items():
        assert summary["dimensions"][dim]["agreement"] == expected
    assert summary["dimensions"]["motion_smoothness"]["ratings"] == sum(
        "motion_smoothness" in r.ratings for r in raters
    )


def test_critic_file_errors_are_located(tmp_path):
    project, _ = make_project(tmp_path, n=1, r=1)
    bad = tmp_path / "critic.jsonl"
    bad.write_text(
        json.dumps({"video": "v/0000.mp4", "ratings": {"semantic_consistency": {"label": "Great"}}}) + "\n"
    )
    with pytest.raises(CliFailed, match=r"line 1, field 'ratings.semantic_consistency'.*unknown label"):
        cli("annotate", "import-critic", str(bad), "--project", str(project))
    for field, value in (("video_id", ["v/0000.mp4"]), ("video", {"path": "v"}), ("reward", "high")):
        bad.write_text(json.dumps({"video": "v/0000.mp4", "ratings": {}, field: value}) + "\n")
        with pytest.raises(CliFailed, match=rf"line 1, field '{field}': (expected a|.*not a video id)"):
            cli("annotate", "import-critic", str(bad), "--project", str(project))
    good = {
        "video": "v/0000.mp4",
        "ratings": {"semantic_consistency": {"label": "Good", "score": 0.9}},
        "reward": 0.9,
    }
    cases = [
        ([{**good, "reward": float("nan")}], "line 1, field 'reward': expected a finite number"),
        ([{**good, "ratings": {"semantic_consistency": {"label": "Good", "score": "x"}}}],
         "line 1, field 'ratings.semantic_consistency': score must be a finite number"),
        ([good, {**good, "reward": 0.1}], "line 2, field 'video': this video was scored on line 1 already"),
        ([], "no line matches a video of the project"),  # an empty file, or another project's scores
        ([{**good, "video": "elsewhere.mp4"}], "no line matches a video of the project"),
    ]  # fmt: skip
    for lines, message in cases:
        bad.write_text("".join(json.dumps(x) + "\n" for x in lines))
        with pytest.raises(CliFailed, match=message):
            cli("annotate", "import-critic", str(bad), "--project", str(project))
    with Project.open(project).session(readonly=True) as session:  # nothing of those was stored
        assert session.scalar(select(func.count()).select_from(CriticScore)) == 0


def test_a_critic_name_is_one_to_200_characters_stored_stripped(tmp_path):
    """An empty name was stored, and could not be chosen again (no critic given: the last one); " c " was
    another critic than "c"; 300 characters overflow the column on PostgreSQL (a 500)."""
    project, admin = make_project(tmp_path, n=1, r=1)
    scores = tmp_path / "scores.jsonl"
    label = {"semantic_consistency": {"label": "Good", "score": 0.9}}
    scores.write_text(json.dumps({"video": "v/0000.mp4", "ratings": label}) + "\n")
    for name in ("", "  ", "c" * 201):
        with pytest.raises(CliFailed, match="a critic name must have 1 to 200 characters"):
            cli("annotate", "import-critic", str(scores), "--project", str(project), "--critic", name)
    with pytest.raises(CliFailed, match="lone surrogate"):  # an undecodable byte on the command line
        cli("annotate", "import-critic", str(scores), "--project", str(project), "--critic", "c\udcff")
    with TestClient(create_app(Project.open(project))) as client:
        for name in ("", "  ", "c" * 201):
            r = client.post("/api/admin/critic", params={"critic": name}, headers=auth(admin), content=b"")
            assert r.status_code == 400 and "a critic name must have 1 to 200" in r.json()["detail"]
        r = client.post(
            "/api/admin/critic", params={"critic": " c "}, headers=auth(admin), content=scores.read_bytes()
        )
        assert r.status_code == 201, r.text
        assert client.get("/api/admin/review", headers=auth(admin)).json()["critics"] == ["c"]


def test_review_names_a_critic_never_imported_and_a_gap_out_of_range(tmp_path):
    """A typo in --critic, or a min gap of NaN, listed no video, as if the critic agreed with every rater."""
    project, admin = make_project(tmp_path, n=1, r=1)
    with pytest.raises(CliFailed, match=r"no critic 'tiny' \(none is imported yet\)"):
        cli("annotate", "review", "--project", str(project), "--critic", "tiny")
    scores = tmp_path / "scores.jsonl"
    scores.write_text(
        json.dumps({"video": "v/0000.mp4", "ratings": {"video_fidelity": {"label": "Bad"}}}) + "\n"
    )
    cli("annotate", "import-critic", str(scores), "--project", str(project), "--critic", "small")
    with pytest.raises(CliFailed, match=r"no critic 'tiny' \(imported: 'small'\)"):
        cli("annotate", "review", "--project", str(project), "--critic", "tiny")
    assert cli("annotate", "review", "--project", str(project), "--critic", "small") == ""  # nothing rated
    with pytest.raises(CliFailed, match="the minimum gap must be a number from 0 to 2"):
        cli("annotate", "review", "--project", str(project), "--min-gap", "nan")
    with TestClient(create_app(Project.open(project))) as client:
        r = client.get("/api/admin/review", params={"critic": "tiny"}, headers=auth(admin))
        assert r.status_code == 404 and r.json()["detail"] == "no critic 'tiny' (imported: 'small')"
        for gap in ("nan", "-1", "2.5"):  # NaN listed nothing, as if every rater agreed with the critic
            r = client.get("/api/admin/review", params={"min_gap": gap}, headers=auth(admin))
            assert (
                r.status_code == 400 and "the minimum gap must be a number from 0 to 2" in r.json()["detail"]
            )
        for given in ({}, {"critic": ""}, {"critic": " small "}):  # none given: the last one
            r = client.get("/api/admin/review", params=given, headers=auth(admin))
            assert r.status_code == 200 and r.json() == {"critics": ["small"], "critic": "small", "items": []}


def test_the_review_compares_with_the_last_imported_critic_and_says_which(tmp_path):
    """Documented as the last imported, the default critic was the last by name (the admin page showed the
    first by name over that list); importing a critic again makes it the last imported."""
    project, admin = make_project(tmp_path, n=1, r=1)
    rater = add_annotator(project, "rater")
    scores = {}
    for name, said in (("zeta", "Normal"), ("alpha", "Good")):  # gaps to the raters' Bad: 1 and 2
        label = {d: {"label": said, "reason": f"{name} says {said}"} for d in DIMS}
        scores[name] = tmp_path / f"{name}.jsonl"
        scores[name].write_text(json.dumps({"video": "v/0000.mp4", "ratings": label}) + "\n")
    with TestClient(create_app(Project.open(project))) as client:
        task = client.get("/api/next", headers=auth(rater)).json()
        body = {"task_id": task["task_id"], "ratings": ratings("Bad")}
        assert client.post("/api/annotations", headers=auth(rater), json=body).status_code == 201

        def listed(**given):
            r = client.get("/api/admin/review", params=given, headers=auth(admin)).json()
            (item,) = r["items"]
            return (
                r["critics"],
                r["critic"],
                item["critic"],
                item["dimensions"]["video_fidelity"]["critic"]["reason"],
            )

        for name in ("zeta", "alpha"):
            r = client.post(
                f"/api/admin/critic?critic={name}", headers=auth(admin), content=scores[name].read_bytes()
            )
            assert r.status_code == 201, r.text
        assert listed() == (["alpha", "zeta"], "alpha", "alpha", "alpha says Good")
        assert listed(critic="zeta") == (["alpha", "zeta"], "zeta", "zeta", "zeta says Normal")
        assert cli("annotate", "review", "--project", str(project)).startswith("v/0000.mp4\tgap 6.00\t")
        cli("annotate", "import-critic", str(scores["zeta"]), "--project", str(project), "--critic", "zeta")
        assert listed() == (["alpha", "zeta"], "zeta", "zeta", "zeta says Normal")
    assert cli("annotate", "review", "--project", str(project)).startswith("v/0000.mp4\tgap 3.00\t")


def test_importing_a_critic_again_replaces_it_whole_and_keeps_the_adjudications(tmp_path):
    """Documented as replacing the critic, a re-import updated the videos of the new file and kept the
    critic's old scores of the others: the review mixed two runs of the critic, unsaid."""
    project, admin = make_project(tmp_path, n=3, r=1)
    rater = add_annotator(project, "rater")
    where = ["--project", str(project)]

    def scores(name: str, videos: range, label: str = "Bad") -> str:
        path = tmp_path / f"{name}.jsonl"
        rating = {d: {"label": label, "reason": f"{name} says {label}"} for d in DIMS}
        path.write_text(
            "".join(json.dumps({"video": f"v/{i:04d}.mp4", "ratings": rating}) + "\n" for i in videos)
        )
        return str(path)

    def listed(critic: str) -> list[str]:
        with Project.open(project).session(readonly=True) as session:
            return [i["video_id"] for i in disagreements(session, critic)]

    with TestClient(create_app(Project.open(project))) as client:
        while (task := client.get("/api/next", headers=auth(rater))).status_code == 200:
            body = {"task_id": task.json()["task_id"], "ratings": ratings("Good")}
            assert client.post("/api/annotations", headers=auth(rater), json=body).status_code == 201
        cli("annotate", "import-critic", scores("all", range(3)), *where, "--critic", "c")
        cli("annotate", "import-critic", scores("other", range(3)), *where, "--critic", "other")
        fixed = {"ratings": ratings("Normal", "adjudicated")}
        assert client.put("/api/admin/review/v/0000.mp4", headers=auth(admin), json=fixed).status_code == 200
        # A refused file changes nothing: the critic's scores are dropped in the import's transaction.
        bad = tmp_path / "bad.jsonl"
        bad.write_text(Path(scores("part", [2])).read_text() + '{"video": "v/0001.mp4", "ratings": 1}\n')
        with pytest.raises(CliFailed, match="ratings"):
            cli("annotate", "import-critic", str(bad), *where, "--critic", "c")
        assert listed("c") == ["v/0000.mp4", "v/0001.mp4", "v/0002.mp4"]
        result = runner.invoke(
            app, ["annotate", "import-critic", scores("part", [2]), *where, "--critic", "c"]
        )
        assert result.exit_code == 0, result.output
        assert "imported 1 scores of 'c'" in result.stderr
        assert "2 earlier scores of 'c' dropped" in result.stderr, result.stderr
        assert listed("c") == ["v/0002.mp4"]  # v/0000 and v/0001 were still listed
        assert listed("other") == ["v/0000.mp4", "v/0001.mp4", "v/0002.mp4"]  # another critic: kept
        # The same over HTTP, which says it in its answer.
        r = client.post(
            "/api/admin/critic?critic=c", headers=auth(admin), content=Path(scores("one", [1])).read_bytes()
        )
        assert r.json() == {"matched": 1, "unmatched": 0, "unparsed": 0, "dropped": 1}, r.text
        review = client.get("/api/admin/review?critic=c", headers=auth(admin)).json()
        assert [i["video_id"] for i in review["items"]] == ["v/0001.mp4"]
    # The adjudication of v/0000, which no score of c lists now, is kept and exported.
    out = tmp_path / "hra.jsonl"
    cli("annotate", "export", *where, "--out", str(out), "--with-reviews")
    (reviewed,) = [r for r in read_jsonl(out, HRARecord) if r.model_extra.get("adjudicated")]
    assert reviewed.video_id == "v/0000.mp4" and reviewed.ratings["video_fidelity"].reason == "adjudicated"


def test_the_review_command_names_the_critic_it_compares_with(tmp_path):
    """`annotate review` without --critic compared with the last imported and did not say which."""
    project, _ = make_project(tmp_path, n=1, r=1)
    where = ["--project", str(project)]
    result = runner.invoke(app, ["annotate", "review", *where])
    assert result.exit_code == 0 and "0 videos to review (no critic scores imported yet" in result.stderr
    path = tmp_path / "s.jsonl"
    path.write_text(
        json.dumps({"video": "v/0000.mp4", "ratings": {"video_fidelity": {"label": "Bad"}}}) + "\n"
    )
    # A name read as rich markup ("[/v2]": a closing tag) crashed import-critic after the import.
    for name in ("first", "[/v2]"):
        result = runner.invoke(app, ["annotate", "import-critic", str(path), *where, "--critic", name])
        assert result.exit_code == 0 and f"imported 1 scores of {name!r}" in result.stderr, result.output
    result = runner.invoke(app, ["annotate", "review", *where])
    assert result.exit_code == 0 and "0 videos to review (against critic '[/v2]')" in result.stderr, (
        result.stderr
    )
    out = tmp_path / "review.jsonl"
    result = runner.invoke(app, ["annotate", "review", *where, "--critic", "first", "--out", str(out)])
    assert result.exit_code == 0 and f"to {out} (against critic 'first')" in result.stderr, result.stderr


def test_critic_scores_of_integer_video_ids_match_their_videos(tmp_path):
    """A manifest may give integer ids (annotate stores 7 as "7"); `critic score` writes them as given."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 2)
    rows = [{**json.loads(x), "video_id": 7 + i} for i, x in enumerate(manifest.read_text().splitlines())]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    create(tmp_path / "project", tmp_path / "videos", manifest)
    scores = tmp_path / "scores.jsonl"
    label = {"semantic_consistency": {"label": "Good", "score": 0.9}}
    scores.write_text(
        "".join(json.dumps({**r, "video": "x.mp4", "ratings": label, "reward": 0.9}) + "\n" for r in rows)
    )
    cli("annotate", "import-critic", str(scores), "--project", str(tmp_path / "project"), "--critic", "c")
    with Project.open(tmp_path / "project").session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(CriticScore)) == 2  # matched by id, not path


def test_scores_of_videos_added_with_dir_are_imported_with_the_same_dir(tmp_path):
    """add-videos --dir stores run1/videos/0000.mp4; `critic score` on the same manifest writes
    videos/0000.mp4: the scores matched nothing."""
    root = tmp_path / "root"
    manifest = write_manifest(root / "run1" / "manifest.jsonl", root / "run1", 2, prefix="videos")
    create(tmp_path / "project", root)
    project = ["--project", str(tmp_path / "project")]
    cli("annotate", "add-videos", *project, "--manifest", str(manifest), "--dir", str(root / "run1"))
    scores = tmp_path / "scores.jsonl"
    label = {"semantic_consistency": {"label": "Good", "score": 0.9}}
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    scores.write_text("".join(json.dumps({**r, "ratings": label, "reward": 0.9}) + "\n" for r in rows))
    with pytest.raises(CliFailed, match="no line matches a video of the project"):
        cli("annotate", "import-critic", str(scores), *project)
    cli("annotate", "import-critic", str(scores), *project, "--dir", str(root / "run1"))
    with Project.open(tmp_path / "project").session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(CriticScore)) == 2
    # the same over HTTP, where the folder is named inside the videos root
    admin = cli("annotate", "admin-token", *project)
    with TestClient(create_app(Project.open(tmp_path / "project"))) as client:
        url = "/api/admin/critic?critic=web"
        assert (
            client.post(url, headers=auth(admin), content=scores.read_bytes()).status_code == 400
        )  # no match
        assert client.post(f"{url}&dir=../x", headers=auth(admin), content=b"").status_code == 400
        # a folder that is not there, or a file: said so (it was "no line matches")
        for where, said in (
            ("run9", "run9 is not found"),
            ("run1/manifest.jsonl", "manifest.jsonl is not a directory"),
        ):
            r = client.post(f"{url}&dir={where}", headers=auth(admin), content=scores.read_bytes())
            assert r.status_code == 400 and said in r.json()["detail"], r.text
        done = client.post(f"{url}&dir=run1", headers=auth(admin), content=scores.read_bytes())
        assert done.status_code == 201 and done.json()["matched"] == 2, done.text


def test_create_says_what_the_study_asks_for(tmp_path):
    """A project made for a pairwise study (no manifest) was announced as "0 videos, 3 ratings each"."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 2)
    made = {}
    for name, extra in (("rate", ["--manifest", str(manifest)]), ("pairs", [])):
        args = ["annotate", "create", "--videos", str(tmp_path / "videos"), "--project", str(tmp_path / name)]
        result = runner.invoke(app, args + extra)
        assert result.exit_code == 0, result.output
        made[name] = result.stderr
    assert "2 videos, 3 ratings each" in made["rate"]
    assert "no videos yet (pairs to judge: `create-pairs`; videos to rate: `add-videos`" in made["pairs"]
    assert "0 videos" not in made["pairs"]


@pytest.fixture
def pair_study(tmp_path):
    # 4 prompts in A, 3 in B: one without a partner
    names = ("--name-a", "cogvideox-2b", "--name-b", "lift", "--ratings-per-pair", "5")
    return make_pair_project(tmp_path, 4, 3, *names)


def test_pairs_are_shown_in_random_recorded_order_and_counted_for_model_a(pair_study, tmp_path):
    project, admin = pair_study
    tokens = [add_annotator(project, f"r{i}") for i in range(6)]
    with TestClient(create_app(Project.open(project))) as client:
        for tok in tokens:
            while (resp := client.get("/api/next", headers=auth(tok))).status_code == 200:
                task = resp.json()
                assert task["kind"] == "pair" and task["video_url"] != task["video_url_b"]
                # This rater prefers whichever side shows model B on motion, A on semantics, ties on fidelity,
                # so the stored (displayed) choice only maps back correctly if the order was recorded.
                with Project.open(project).session(readonly=True) as s:
                    swapped = s.scalar(select(Task.swapped).where(Task.id == task["task_id"]))
                left_is_a = not swapped
                choices = {
                    "semantic_consistency": "A" if left_is_a else "B",
                    "motion_smoothness": "B" if left_is_a else "A",
                    "video_fidelity": "tie",
                }
                bad = client.post(
                    "/api/annotations",
                    headers=auth(tok),
                    json={"task_id": task["task_id"], "choices": {**choices, "video_fidelity": "C"}},
                )
                assert bad.status_code == 422 and "choice must be one of" in bad.json()["detail"]
                r = client.post(
                    "/api/annotations",
                    headers=auth(tok),
                    json={"task_id": task["task_id"], "choices": choices},
                )
                assert r.status_code == 201
        with Project.open(project).session(readonly=True) as s:
            orders = list(s.scalars(select(Task.swapped)))
        assert len(orders) == 15 and 0 < sum(orders) < 15  # 3 pairs x 5 judgements, both orders used
        assert client.get("/api/admin/pairs", headers=auth(tokens[0])).status_code == 403
    out = tmp_path / "pairs.json"
    cli("annotate", "export-pairs", "--project", str(project), "--out", str(out))
    results = json.loads(out.read_text())
    (comp,) = results["comparisons"]
    assert (comp["model_a"], comp["model_b"], comp["pairs_judged"], comp["judgements"]) == (
        "cogvideox-2b",
        "lift",
        3,
        15,
    )
    assert comp["dimensions"]["semantic_consistency"] == {
        "win": 15,
        "tie": 0,
        "loss": 0,
        "win_rate": 1.0,
        "tie_rate": 0.0,
        "loss_rate": 0.0,
    }
    assert (
        comp["dimensions"]["motion_smoothness"]["loss"] == 15
        and comp["dimensions"]["video_fidelity"]["tie_rate"] == 1.0
    )
    j = results["judgements"][0]
    assert j["winner"] == {
        "semantic_consistency": "cogvideox-2b",
        "motion_smoothness": "lift",
        "video_fidelity": "tie",
    }
    assert j["video_a"].startswith("base/") and j["video_b"].startswith("lift/")


def test_the_progress_of_a_pairwise_study_counts_its_judgements(pair_study):
    # A study of pairs alone read "0/0 ratings, 0/0 videos complete" in `annotate progress` and on the
    # admin page: nothing said how many judgements were done of how many needed.
    project, admin = pair_study  # 3 pairs, 5 judgements each
    tokens = [add_annotator(project, f"r{i}") for i in range(5)]
    choices = {d: "tie" for d in ("semantic_consistency", "motion_smoothness", "video_fidelity")}

    def judge(client, token: str, n: int) -> None:
        for _ in range(n):
            task = client.get("/api/next", headers=auth(token)).json()
            sent = client.post(
                "/api/annotations", headers=auth(token), json={"task_id": task["task_id"], "choices": choices}
            )
            assert sent.status_code == 201, sent.text

    with TestClient(create_app(Project.open(project))) as client:
        judge(client, tokens[0], 2)
        p = client.get("/api/admin/progress", headers=auth(admin)).json()
        assert (p["judgements_done"], p["judgements_needed"], p["pairs_complete"], p["pairs"]) == (
            2,
            15,
            0,
            3,
        )
        said = cli("annotate", "progress", "--project", str(project))
        assert "2/15 pairwise judgements, 0/3 pairs complete" in said and "0/0 ratings" not in said, said
        judge(client, tokens[0], 1)
        for token in tokens[1:]:
            judge(client, token, 3)
        p = client.get("/api/admin/progress", headers=auth(admin)).json()
        assert (p["judgements_done"], p["pairs_complete"]) == (15, 3)


def test_more_judgements_per_pair_than_the_database_compares_are_refused_first(tmp_path):
    """--ratings-per-pair 2**63 was stored, and every rater's request was then a 500."""
    with pytest.raises(CliFailed, match=r"--ratings-per-pair: at most 1,000,000"):
        make_pair_project(tmp_path, 2, 2, "--ratings-per-pair", str(2**63))
    with Project.open(tmp_path / "project").session(readonly=True) as session:  # no pair was made
        assert session.scalar(select(func.count()).select_from(Pair)) == 0


def test_model_names_are_one_to_200_characters_stored_stripped(tmp_path):
    """ "x " and "x" passed as two models that every result then showed alike; a blank name was stored; an
    undecodable byte on the command line (a lone surrogate) was a traceback."""
    for name_a, name_b, message in [
        ("x ", "x", r"the two models need different names \(both are 'x'\)"),
        (" ", "y", "a model name must have 1 to 200 characters"),
        ("x" * 201, "y", "a model name must have 1 to 200 characters"),
        ("x\udcff", "y", "a model name must be valid Unicode text"),
    ]:
        with pytest.raises(CliFailed, match=message):
            make_pair_project(tmp_path, 2, 2, "--name-a", name_a, "--name-b", name_b)
        shutil.rmtree(tmp_path / "project")
    project, admin = make_pair_project(tmp_path, 2, 2, "--name-a", " base ", "--name-b", "lift")
    with Project.open(project).session(readonly=True) as session:
        assert set(session.scalars(select(Pair.model_a))) == {"base"}


def test_pairs_match_by_prompt_and_seed(tmp_path):
    # One prompt, three seeds; B listed in reverse order: only the seeds can pair them right.
    project, _ = make_pair_project(tmp_path, 3, 3, reverse_b=True, prompt="same prompt")
    with Project.open(project).session(readonly=True) as s:
        pairs = [
            (p.video_a.video, p.video_b.video, p.model_a, p.model_b)
            for p in s.scalars(select(Pair).order_by(Pair.id))
        ]
    assert pairs == [(f"base/{i:04d}.mp4", f"lift/{i:04d}.mp4", "a", "b") for i in range(3)]


def test_pairs_match_by_prompt_occurrence_without_seeds(tmp_path):
    project, _ = make_pair_project(tmp_path, 2, 3, reverse_b=True, prompt="same prompt", seeds=False)
    with Project.open(project).session(readonly=True) as s:
        pairs = [(p.video_a.video, p.video_b.video) for p in s.scalars(select(Pair).order_by(Pair.id))]
    assert pairs == [("base/0000.mp4", "lift/0002.mp4"), ("base/0001.mp4", "lift/0001.mp4")]


def test_pairs_of_two_generate_runs_with_their_own_roots(tmp_path):
    # `videolift generate` writes paths relative to each run's OUT: videos/00000_00.mp4 in both runs,
    # and the same video_id (00000_00) too.
    gen = tmp_path / "gen"
    for run in ("base", "lift"):
        manifest = write_manifest(gen / run / "manifest.jsonl", gen / run, 2, prefix="videos")
        lines = [json.loads(x) for x in manifest.read_text().splitlines()]
        manifest.write_text(
            "".join(json.dumps(r | {"video_id": f"{i:05d}_00"}) + "\n" for i, r in enumerate(lines))
        )
    project = tmp_path / "project"
    create(project, gen)
    args = [
        "--manifest-a",
        str(gen / "base" / "manifest.jsonl"),
        "--manifest-b",
        str(gen / "lift" / "manifest.jsonl"),
    ]
    dirs = ["--dir-a", str(gen / "base"), "--dir-b", str(gen / "lift")]
    with pytest.raises(CliFailed, match="not inside the videos root"):
        cli("annotate", "create-pairs", *args, "--project", str(project), "--dir-a", str(tmp_path))
    # Both manifests are called manifest.jsonl: the models are named by their runs' directories.
    cli("annotate", "create-pairs", *args, "--project", str(project), *dirs)
    with Project.open(project).session(readonly=True) as s:
        pairs = [(p.model_a, p.video_a.video, p.model_b, p.video_b.video) for p in s.scalars(select(Pair).order_by(Pair.id))]  # fmt: skip
    assert pairs == [
        ("base", f"base/videos/{i:04d}.mp4", "lift", f"lift/videos/{i:04d}.mp4") for i in range(2)
    ]
    # Rating the paired videos too: the two runs' videos share their ids, and the export,
    # agreement and reviews know a rated video by its id, so the second run's are refused as new ones are.
    add = ["annotate", "add-videos", "--project", str(project), "--manifest"]
    cli(*add, str(gen / "base" / "manifest.jsonl"), "--dir", str(gen / "base"))
    with pytest.raises(CliFailed, match="video_id '00000_00' is already in the project"):
        cli(*add, str(gen / "lift" / "manifest.jsonl"), "--dir", str(gen / "lift"))


def test_a_legacy_record_that_is_no_hra_record_is_named_on_export():
    from videolift.core.errors import VideoliftError
    from videolift.data.annotate.admin import _record
    from videolift.data.annotate.models import Video

    legacy = Video(video="v/0.mp4", video_id="v0", prompt="   ", extra={})  # accepted before 2026-12-06
    ratings = {"video_fidelity": {"label": "Good", "reason": ""}}
    with pytest.raises(
        VideoliftError,
        match="video 'v0' \\(annotator 'alice'\\) cannot be exported as an HRA record \\(prompt: ",
    ):
        _record(legacy, "alice", ratings)


def test_an_adjudicated_review_is_not_counted_as_a_rater_in_agreement():
    """Agreement over an export with reviews counts the raters only, not the adjudicated review."""
    from videolift.data.annotate.admin import agreement

    def record(annotator: str, label: str, **marks) -> HRARecord:
        rating = {"semantic_consistency": {"label": label, "reason": "x"}}
        return HRARecord(
            video="v.mp4", video_id="v", prompt="p", annotator=annotator, ratings=rating, **marks
        )

    records = [record("x", "Good"), record("y", "Bad"), record("review:admin", "Good", adjudicated=True)]
    semantic = agreement(records)["semantic_consistency"]
    assert (semantic["pairwise_agreement"], semantic["videos"]) == (0.0, 1)


def test_critic_scores_match_a_video_by_its_id_before_its_path(tmp_path):
    """A scores line naming video a by id and video b's path scores video a, not b."""
    manifest = write_manifest(tmp_path / "m.jsonl", tmp_path / "videos", 2)
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    rows = [{**r, "video_id": vid} for r, vid in zip(rows, ("a", "b"), strict=True)]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    create(tmp_path / "project", tmp_path / "videos", manifest)
    scores = tmp_path / "scores.jsonl"
    label = {"semantic_consistency": {"label": "Good", "score": 0.9}}
    line = {"video_id": "a", "video": rows[1]["video"], "prompt": "p", "ratings": label, "reward": 0.9}
    scores.write_text(json.dumps(line) + "\n")
    cli("annotate", "import-critic", str(scores), "--project", str(tmp_path / "project"), "--critic", "c")
    with Project.open(tmp_path / "project").session(readonly=True) as session:
        scored = session.scalars(select(Video.video_id).join(CriticScore, CriticScore.video_id == Video.id))
        assert list(scored) == ["a"]


def test_the_admin_sees_who_skipped_a_pair_and_why(pair_study, tmp_path):
    # A rater's skip reason was shown for rating tasks only: a pair skipped because a video does not play
    # or is offensive was counted at most (`pair_skipped`), its reason in no endpoint, page or command.
    project, admin = pair_study
    tokens = {name: add_annotator(project, name) for name in ("alice", "bob")}
    flagged = []
    with TestClient(create_app(Project.open(project))) as client:
        for name, reason in (("alice", "Video does not play"), ("bob", "Offensive content\nsee 0:02 ✋")):
            task = client.get("/api/next", headers=auth(tokens[name])).json()
            assert task["kind"] == "pair"
            r = client.post(
                f"/api/tasks/{task['task_id']}/skip", headers=auth(tokens[name]), json={"reason": reason}
            )
            assert r.status_code == 200, r.text
            with Project.open(project).session(readonly=True) as s:
                pair = s.scalar(select(Task).where(Task.id == task["task_id"])).pair
                flagged.append(
                    {
                        "pair_id": pair.id,
                        "prompt": pair.prompt,
                        "model_a": "cogvideox-2b",
                        "model_b": "lift",
                        "video_a": pair.video_a.video,
                        "video_b": pair.video_b.video,
                        "annotator": name,
                        "reason": reason,
                    }
                )
        results = client.get("/api/admin/pairs", headers=auth(admin)).json()
        assert results["skipped"] == flagged and results["comparisons"] == []
        annotators = client.get("/api/admin/progress", headers=auth(admin)).json()["annotators"]
        assert {a["name"]: a["pair_skipped"] for a in annotators} == {"alice": 1, "bob": 1}
    said = cli("annotate", "progress", "--project", str(project))
    assert "skipped pairs (2):" in said, said
    assert f"pair {flagged[0]['pair_id']}\talice\tVideo does not play\t{flagged[0]['video_a']}" in said, said
    out = tmp_path / "pairs.json"
    cli("annotate", "export-pairs", "--project", str(project), "--out", str(out))
    assert json.loads(out.read_text())["skipped"] == flagged
