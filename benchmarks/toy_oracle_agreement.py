"""How often the toy oracle's labels agree with the injected ground truth, per dimension and defect kind.

Renders a corpus with defects, rates every video with the oracle under several viewing conditions, and
prints agreement tables (the numbers in docs/toy-world.md). Conditions:
  raw        the rendered frames themselves
  lossless   written as the corpus writes them (H.264 crf 0, yuv444p) and read back
  yuv420p    re-encoded as ordinary video (crf 18, chroma subsampled)
  generated  rendered in a generator-like style (softness, colour drift, faint noise), then yuv420p
Then a simulated panel rates the raw videos; its agreement is reported with the foundation's HRA stats.

    .venv/bin/python benchmarks/toy_oracle_agreement.py --n 1200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from videolift.core.schema import DIMENSIONS, LABELS
from videolift.core.video import read_video, write_video
from videolift.toy.corpus import Item, plan
from videolift.toy.defects import truth
from videolift.toy.oracle import judge
from videolift.toy.render import FPS, Style, render

CONDITIONS = ("raw", "lossless", "yuv420p", "generated")


def _frames(item: Item, condition: str, tmp: Path):
    if condition == "generated":
        frames = render(item.spec, item.seed, item.defects, style=Style.generated(item.seed))
    else:
        frames = item.render()
    if condition == "raw":
        return frames
    path = tmp / f"{item.video_id}-{condition}.mp4"
    if condition == "lossless":
        write_video(path, frames, fps=FPS, crf=0, pix_fmt="yuv444p")
    else:
        write_video(path, frames, fps=FPS, crf=18, pix_fmt="yuv420p")
    out = read_video(path)
    path.unlink()
    return out


def _rate(args: tuple[list[Item], str]) -> tuple[list[dict], float]:
    """The chunk's ratings, and the seconds this process spent on them (pool start-up not counted)."""
    items, condition = args
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            j = judge(_frames(item, condition, Path(tmp)), item.spec)
            rows.append(
                {
                    "video_id": item.video_id,
                    "prompt": item.spec.text,
                    "defects": [d.to_json() for d in item.defects],
                    "truth": {d.value: lab.value for d, lab in truth(item.defects).items()},
                    "oracle": {d.value: j.label(d).value for d in DIMENSIONS},
                    "reasons": {d.value: j.reason(d) for d in DIMENSIONS},
                    "measurements": j.measurements,
                }
            )
    return rows, time.perf_counter() - start


def rate_all(items: list[Item], condition: str, workers: int) -> tuple[list[dict], float]:
    """Every item's ratings, and the seconds the workers spent rating (summed over workers)."""
    if workers == 1:
        return _rate((items, condition))
    chunks = [items[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_rate, [(c, condition) for c in chunks if c]))
    rows = sorted((r for p, _ in parts for r in p), key=lambda r: r["video_id"])
    return rows, sum(seconds for _, seconds in parts)


def agreement_tables(rows: list[dict]) -> dict:
    """Agreement per dimension, per (dimension, defect kind, severity) and on clean dimensions."""
    per_dim = {d.value: [0, 0] for d in DIMENSIONS}
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    confusion = {d.value: defaultdict(int) for d in DIMENSIONS}
    for r in rows:
        kinds = {d["dimension"]: f"{d['kind']}/{d['severity']}" for d in r["defects"]}
        for dim in per_dim:
            ok = r["truth"][dim] == r["oracle"][dim]
            per_dim[dim][0] += ok
            per_dim[dim][1] += 1
            key = f"{dim}:{kinds.get(dim, 'none')}"
            per_kind[key][0] += ok
            per_kind[key][1] += 1
            confusion[dim][(r["truth"][dim], r["oracle"][dim])] += 1
    return {"per_dim": per_dim, "per_kind": dict(per_kind), "confusion": confusion}


def print_condition(condition: str, tables: dict, seconds: float, n: int, verbose: bool) -> None:
    print(f"\n## condition: {condition}  ({n} videos, {1000 * seconds / n:.0f} ms/video in one process)")
    print("| dimension | agreement |\n|---|---|")
    for dim, (ok, total) in tables["per_dim"].items():
        print(f"| {dim} | {ok / total:.3f} ({ok}/{total}) |")
    if not verbose:
        return
    for dim, conf in tables["confusion"].items():
        print(f"\n{dim} confusion (rows truth, columns oracle):")
        print("        " + " ".join(f"{lab.value:>7s}" for lab in LABELS))
        for t in LABELS:
            print(f"{t.value:7s} " + " ".join(f"{conf.get((t.value, o.value), 0):7d}" for o in LABELS))


def print_per_kind(all_tables: dict[str, dict]) -> None:
    """One table: rows (dimension, injected defect), columns the viewing conditions."""
    conditions = list(all_tables)
    keys = sorted({k for t in all_tables.values() for k in t["per_kind"]})
    print("\n## agreement per defect kind (the dimension the defect belongs to; 'none': no defect there)")
    print("| dimension | defect | videos | " + " | ".join(conditions) + " |")
    print("|---|---|---|" + "---|" * len(conditions))
    for key in keys:
        dim, kind = key.split(":")
        total = all_tables[conditions[0]]["per_kind"][key][1]
        cells = [f"{all_tables[c]['per_kind'][key][0] / total:.3f}" for c in conditions]
        print(f"| {dim} | {kind} | {total} | " + " | ".join(cells) + " |")


def panel_agreement(items: list[Item], annotators: int, seed: int) -> dict:
    from videolift.core.schema import HRARecord
    from videolift.data.stats import agreement, labels_by_video
    from videolift.toy.panel import Panel

    panel = Panel(annotators, seed=seed)
    records = []
    vs_truth = defaultdict(lambda: [0, 0])
    for item in items:
        j = judge(item.render(), item.spec)
        for annotator, ratings in panel.rate(item.video_id, j):
            records.append(
                HRARecord(
                    video_id=item.video_id,
                    video=f"{item.video_id}.mp4",
                    prompt=item.spec.text,
                    annotator=annotator,
                    ratings=ratings,
                )
            )
            for dim, rating in ratings.items():
                vs_truth[dim.value][0] += rating.label == truth(item.defects)[dim]
                vs_truth[dim.value][1] += 1
    by_video = labels_by_video(records)
    return {
        "records": len(records),
        "agreement": {d.value: agreement(by_video[d]) for d in DIMENSIONS},
        "vs_truth": {d: ok / total for d, (ok, total) in vs_truth.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--defect-rate", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--annotators", type=int, default=3, help="simulated panel size (0: skip the panel)")
    parser.add_argument("--dump", type=Path, help="write every rating with its measurements to this JSONL")
    parser.add_argument("--verbose", action="store_true", help="also print confusion matrices")
    args = parser.parse_args(argv)
    if unknown := set(args.conditions.split(",")) - set(CONDITIONS):  # anything else ran as yuv420p
        parser.error(f"unknown --conditions {', '.join(sorted(unknown))}; known: {', '.join(CONDITIONS)}")
    if args.n < 1 or args.workers < 1:
        parser.error("--n and --workers must be at least 1")

    items = plan(args.n, defect_rate=args.defect_rate, seed=args.seed, split=None)
    dump = open(args.dump, "w") if args.dump else None  # noqa: SIM115
    all_tables = {}
    for condition in args.conditions.split(","):
        rows, seconds = rate_all(items, condition, args.workers)
        all_tables[condition] = agreement_tables(rows)
        print_condition(condition, all_tables[condition], seconds, len(rows), args.verbose)
        if dump:
            for r in rows:
                dump.write(json.dumps({"condition": condition, **r}) + "\n")
    if dump:
        dump.close()
    print_per_kind(all_tables)
    if args.annotators:
        result = panel_agreement(items, args.annotators, args.seed)
        print(f"\n## simulated panel: {args.annotators} annotators, {result['records']} records")
        print(
            "| dimension | Krippendorff alpha (ordinal) | pairwise agreement | agreement with truth |\n|---|---|---|---|"
        )
        for dim, a in result["agreement"].items():
            print(
                f"| {dim} | {a['krippendorff_alpha']:.3f} | {a['pairwise_agreement']:.3f} | {result['vs_truth'][dim]:.3f} |"
            )


if __name__ == "__main__":
    main()
