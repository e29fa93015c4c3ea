"""Markdown tables of bench/filtered_search_real.py results, before and after, for docs/search.md.

    .venv/bin/python bench/filtered_search_table.py reviews glove
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def cell(m: dict[str, Any]) -> str:
    rows = "" if m["rows_ok"] else f", **{m['rows_min']} rows**"
    err = " **errors**" if m.get("errors") else ""
    return f"{m['recall_mean']:.3f} / {m['recall_min']:.2f}{rows}{err}"


def table(corpus: str) -> str:
    runs = {label: json.loads(path.read_text())
            for label in ("before", "after")
            if (path := RESULTS / f"filtered_search_real_{corpus}_{label}.json").exists()}
    after = runs.get("after") or runs["before"]
    before = {r["filter"]: r for r in runs.get("before", {}).get("rows", [])}
    out = [f"**{corpus}**: {after['items']:,} items x {after['dims']} d, "
           f"{after['queries']} queries per filter, k = 10.\n",
           "| filter | rows passing | before: strategy · recall mean / min · p50 ms | "
           "after: strategy · recall mean / min · p50 / p95 ms | after: exact p50 · hnsw p50 ·"
           " auto / faster | naive HNSW recall · p50 | raw exact p50 |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in after["rows"]:
        b = before.get(r["filter"])
        old = (f"{b['strategy']} · {cell(b['auto'])} · {b['auto']['p50_ms']:.2f}"
               if b else "-")
        out.append(
            f"| {r['filter']} | {r['matching']:,} ({r['selectivity']:.1%}) | {old} | "
            f"{r['strategy']} · {cell(r['auto'])} · {r['auto']['p50_ms']:.2f} / "
            f"{r['auto']['p95_ms']:.2f} | {r['exact']['p50_ms']:.2f} · "
            f"{r['hnsw']['p50_ms']:.2f} ({cell(r['hnsw'])}) · **{r['auto_vs_best']:.2f}x** | "
            f"{r['naive']['recall_mean']:.3f} · {r['naive']['p50_ms']:.2f} | "
            f"{r['raw_exact']['p50_ms']:.2f} |")
    for label, run in runs.items():
        u = run["unfiltered"]
        out.append(f"\n{label}: unfiltered `select * from pyembed.search(q, 10)` p50 "
                   f"{u['pyembed_p50_ms']:.3f} ms vs raw `ORDER BY <=> LIMIT 10` "
                   f"{u['raw_p50_ms']:.3f} ms at ef_search {u['ef_search']}: "
                   f"**{u['ratio']:.2f}x**.")
    return "\n".join(out)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["reviews", "glove"]:
        print(table(name) + "\n")
