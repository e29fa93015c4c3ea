"""Text -> vectors with an ONNX transformer: tokenizers + onnxruntime, batched by length.

Texts are tokenized once, sorted by token count and cut into batches, so a batch pads only to
its own longest text; outputs are put back in input order. Pooling follows the model (mean over
the attention mask for sentence-transformers models like all-MiniLM-L6-v2), then L2
normalization. Output is deterministic: same texts, same vectors, whatever the batch order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Encoding

from ..arguments import is_blank
from ..errors import InvalidInputError, ModelError

log = logging.getLogger(__name__)

# Text beyond this many characters per allowed token cannot survive truncation; cutting it first
# keeps a 1 MB input from costing a full tokenization.
CHARS_PER_TOKEN_CAP = 16


@dataclass(frozen=True)
class EncoderConfig:
    """How to run one model: files, pooling, limits."""

    onnx_path: Path
    tokenizer_path: Path
    max_length: int = 256
    pooling: str = "mean"  # "mean" or "cls"
    normalize: bool = True
    batch_size: int = 64  # texts per batch, at most
    batch_tokens: int = 1024  # padded tokens per batch, at most (one text may exceed it)
    threads: int = 0  # 0: onnxruntime's default (all cores)


@dataclass
class EncodeStats:
    """Counters of the last :meth:`Encoder.encode` call."""

    texts: int = 0
    truncated: int = 0
    batches: int = 0
    padded_tokens: int = 0


class Encoder:
    """Embeds texts with one ONNX model.

    Example::

        encoder = Encoder(EncoderConfig(Path("model.onnx"), Path("tokenizer.json")))
        vectors = encoder.encode(["a red dress", "blue jeans"])   # (2, 384) float32, unit norm
    """

    def __init__(self, config: EncoderConfig):
        if config.pooling not in ("mean", "cls"):
            raise ModelError(f"unknown pooling {config.pooling!r}: use 'mean' or 'cls'")
        self.config = config
        # Imported here, where a model is loaded: every CLI command would pay for them.
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(config.tokenizer_path))
        except Exception as exc:  # the tokenizers binding raises a bare Exception
            raise ModelError(f"cannot load tokenizer {config.tokenizer_path}: {exc}") from exc
        # tokenizer.json files often pad every input to a fixed length: we pad per batch instead.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=config.max_length)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if config.threads > 0:
            options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(config.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {config.onnx_path}: {exc}") from exc
        self.input_names = {i.name for i in self.session.get_inputs()}
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        self.pooled_output = len(output.shape) == 2
        self.dimensions = int(output.shape[-1]) if isinstance(output.shape[-1], int) else None
        self.last_stats = EncodeStats()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns a float32 array (len(texts), dimensions).

        Empty or whitespace-only texts, non-strings and strings that are not valid Unicode (lone
        surrogates) are rejected with :class:`InvalidInputError`; texts over the model's max
        length are truncated and counted in ``last_stats.truncated``.
        """
        _check_texts(texts)
        stats = EncodeStats(texts=len(texts))
        cap = self.config.max_length * CHARS_PER_TOKEN_CAP
        encodings = self.tokenizer.encode_batch([t[:cap] for t in texts])
        stats.truncated = sum(
            1 for t, e in zip(texts, encodings, strict=True) if e.overflowing or len(t) > cap
        )
        if stats.truncated:
            log.warning("%d of %d texts truncated to %d tokens", stats.truncated, len(texts),
                        self.config.max_length)
        lengths = [len(e.ids) for e in encodings]
        order = np.argsort(lengths, kind="stable")
        result: np.ndarray | None = None
        for index in self._batches(order, lengths):
            vectors = self._run([encodings[i] for i in index], stats)
            if result is None:
                result = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            result[index] = vectors
        self.last_stats = stats
        if result is None:
            return np.empty((0, self.dimensions or 0), dtype=np.float32)
        return result

    def _batches(self, order: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
        """Cut the length-sorted ``order`` into batches of at most ``batch_size`` texts and
        ``batch_tokens`` padded tokens: many short texts go together, long ones in small
        batches whose activations stay in the CPU caches."""
        batches, start = [], 0
        while start < len(order):
            end = start + 1
            while (end < len(order) and end - start < self.config.batch_size
                   and (end - start + 1) * lengths[order[end]] <= self.config.batch_tokens):
                end += 1
            batches.append(order[start:end])
            start = end
        return batches

    def _run(self, batch: list[Encoding], stats: EncodeStats) -> np.ndarray:
        feed = model_inputs(batch)
        mask = feed["attention_mask"]
        stats.batches += 1
        stats.padded_tokens += int(mask.size - mask.sum())
        feed = {k: v for k, v in feed.items() if k in self.input_names}
        hidden = np.asarray(self.session.run([self.output_name], feed)[0], dtype=np.float32)
        if self.pooled_output:
            pooled = hidden
        elif self.config.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        if self.config.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled


def model_inputs(batch: list[Encoding]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` of a batch, padded to its
    longest encoding."""
    width = max(len(e.ids) for e in batch)
    ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    types = np.zeros((len(batch), width), dtype=np.int64)
    for row, enc in enumerate(batch):
        n = len(enc.ids)
        ids[row, :n] = enc.ids
        mask[row, :n] = 1
        types[row, :n] = enc.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _check_texts(texts: object) -> None:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}")
    for n, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {n} is not a string (got {type(text).__name__})")
        if is_blank(text):
            raise InvalidInputError(f"text {n} is empty: nothing to embed")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"text {n} is not valid UTF-8 (lone surrogate at position "
                                    f"{exc.start})") from None
