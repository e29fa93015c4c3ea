"""The ONNX encoder against sentence-transformers reference vectors, and its edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyembed_db import InvalidInputError, ModelError
from pyembed_db.embed import DEFAULT_MODEL, Encoder, EncoderConfig
from pyembed_db.embed.models import resolve_path

FIXTURES = Path(__file__).parent / "fixtures"
SENTENCES: list[str] = json.loads((FIXTURES / "reference_sentences.json").read_text("utf-8"))
REFERENCE: np.ndarray = np.load(FIXTURES / "minilm_reference.npz")["vectors"]


def _encoder(onnx: str | Path, tokenizer: str | Path, **kwargs: Any) -> Encoder:
    return Encoder(EncoderConfig(resolve_path(str(onnx)), resolve_path(str(tokenizer)), **kwargs))


@pytest.fixture(scope="module")
def default_encoder() -> Encoder:
    return _encoder(DEFAULT_MODEL["onnx"], DEFAULT_MODEL["tokenizer"])


def _cosines(vectors: np.ndarray) -> np.ndarray:
    return np.sum(vectors * REFERENCE, axis=1)


def test_exported_fp32_matches_sentence_transformers(exported_minilm: dict[str, Any]) -> None:
    encoder = _encoder(exported_minilm["models"]["fp32"], exported_minilm["tokenizer"])
    assert _cosines(encoder.encode(SENTENCES)).min() >= 0.9999


def test_exported_int8_matches_sentence_transformers(exported_minilm: dict[str, Any]) -> None:
    encoder = _encoder(exported_minilm["models"]["int8"], exported_minilm["tokenizer"])
    assert _cosines(encoder.encode(SENTENCES)).min() >= 0.99


def test_default_packaged_int8_matches_sentence_transformers(default_encoder: Encoder) -> None:
    assert _cosines(default_encoder.encode(SENTENCES)).min() >= 0.99


def test_vectors_are_unit_length_and_384_dims(default_encoder: Encoder) -> None:
    vectors = default_encoder.encode(SENTENCES)
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_is_nearer_than_unrelated(default_encoder: Encoder) -> None:
    a, b, c = default_encoder.encode([
        "Where can I buy a cheap red summer dress?",
        "Looking for an inexpensive crimson dress for the summer",
        "The central bank raised interest rates by a quarter point.",
    ])
    assert a @ b > 0.6 > a @ c


def test_output_does_not_depend_on_batching_or_order(default_encoder: Encoder) -> None:
    together = default_encoder.encode(SENTENCES)
    one_by_one = np.vstack([default_encoder.encode([s]) for s in SENTENCES])
    order = np.random.default_rng(3).permutation(len(SENTENCES))
    shuffled = default_encoder.encode([SENTENCES[i] for i in order])
    np.testing.assert_allclose(together, one_by_one, atol=2e-5)
    np.testing.assert_allclose(together[order], shuffled, atol=2e-5)


def test_batches_pad_only_to_their_own_longest(default_encoder: Encoder) -> None:
    texts = ["short"] * 64 + [" ".join(["long"] * 200)] * 64
    default_encoder.encode(texts)
    # Sorted by length, each batch holds same-length texts: no padding at all. The 64 short
    # texts (3 tokens with [CLS] and [SEP]) fill one batch of 64; the long ones (202 tokens)
    # go 5 to a batch under the 1,024-token budget: 13 batches.
    assert default_encoder.last_stats.padded_tokens == 0
    assert default_encoder.config.batch_tokens == 1024
    assert default_encoder.last_stats.batches == 1 + 13


def test_huge_text_is_truncated_and_counted(default_encoder: Encoder) -> None:
    huge = "word " * 200_000  # 1 MB
    vectors = default_encoder.encode(["fine", huge])
    assert default_encoder.last_stats.truncated == 1
    assert np.isfinite(vectors).all()


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_text_is_rejected(default_encoder: Encoder, bad: str) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        default_encoder.encode(["ok", bad])


def test_not_an_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        _encoder(bogus, DEFAULT_MODEL["tokenizer"])
