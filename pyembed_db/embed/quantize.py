"""Int8 quantization of an exported transformer: outlier channels split off, then dynamic int8.

Dynamic quantization gives each activation matrix one scale per batch. Transformer activations
have a few outlier channels (all-MiniLM-L6-v2: 1-4 of the 384 LayerNorm outputs reach 14-30
where the median channel stays under 2), and one scale spent on them leaves the other channels
a handful of int8 steps. So before quantizing, every weight MatMul whose input has such channels
is split in two: the outlier channels, found on calibration sentences (calibration.json, none of
them in the tests' reference set), go through a small fp32 MatMul; the other channels go through
the int8 one, with the outliers zeroed so they no longer set its scale; the results are added.
The MatMuls matched by :data:`KEEP_FP32_PATTERNS` stay fp32 as well.

Measured on all-MiniLM-L6-v2 against sentence-transformers (reference sentences, ML-100K titles,
clothing reviews; 2 threads): quantizing every MatMul is 2.1x faster than fp32 but falls to min
cosine 0.96 (one-word inputs suffer most); with the split 1.8x at min cosine 0.987; with the
split and the two most sensitive remaining MatMuls (chosen greedily) in fp32, 1.7x at 0.992.
Keeping whole MatMuls fp32 instead of splitting needs ten of them for 0.994, at 1.5x.

Weights are quantized to *unsigned* int8. With signed weights onnxruntime multiplies uint8
activations by int8 weights with AVX2's ``vpmaddubsw``, whose int16 sums saturate; CPUs with
AVX-512 VNNI do not saturate, so the same file scored min cosine 0.992 on a VNNI machine and 0.973
on an AVX2-only one (AMD EPYC). Unsigned weights take the u8u8 kernel, which never saturates:
0.991 on both (7-bit ``reduce_range`` weights reached only 0.989).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .encoder import model_inputs

log = logging.getLogger(__name__)

OUTLIER_RATIO = 6.0  # an outlier channel's max |x| exceeds 6x the median channel's
MAX_OUTLIERS = 4  # channels split off per MatMul input
KEEP_FP32_PATTERNS = ("/layer.2/output/dense/MatMul", "/layer.4/intermediate/dense/MatMul")


def calibration_sentences() -> list[str]:
    """The sentences activation ranges are measured on."""
    text = resources.files("pyembed_db.embed").joinpath("calibration.json").read_text("utf-8")
    return list(json.loads(text))


def _weight_matmuls(graph: Any) -> dict[str, list[Any]]:
    """MatMul nodes with a constant weight, grouped by their activation input."""
    weights = {i.name for i in graph.initializer}
    groups: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            groups[node.input[0]].append(node)
    return groups


def activation_ranges(model_path: Path, tokenizer_path: Path,
                      texts: list[str]) -> dict[str, np.ndarray]:
    """Max |x| per channel of every weight MatMul's input, over the tokens of ``texts``."""
    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model = onnx.load(str(model_path))
    names = list(_weight_matmuls(model.graph))
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.no_padding()
    ranges: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), 32):
        feed = model_inputs(tokenizer.encode_batch(texts[start:start + 32]))
        real = feed["attention_mask"].astype(bool)  # padding tokens do not count
        outputs = session.run(names, {k: v for k, v in feed.items() if k in wanted})
        for name, values in zip(names, outputs, strict=True):
            batch_max = np.abs(values[real]).max(axis=0)
            ranges[name] = np.maximum(ranges.get(name, batch_max), batch_max)
    return ranges


def split_outliers(model_path: Path, out: Path, ranges: dict[str, np.ndarray]) -> list[str]:
    """Write ``model_path`` with outlier channels split off (see the module docstring).

    Returns the names of the small fp32 MatMuls that carry the outlier channels.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    split = {n.name for nodes in _weight_matmuls(graph).values() for n in nodes}
    nodes, outlier_matmuls = [], []
    for node in graph.node:
        channels = _outliers(ranges[node.input[0]]) if node.name in split else np.empty(0, int)
        if not len(channels):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        name, x = node.name, node.input[0]
        keep = np.ones(w.shape[0], dtype=np.float32)
        keep[channels] = 0
        graph.initializer.extend([
            numpy_helper.from_array(keep, f"{name}/inlier_mask"),
            numpy_helper.from_array(np.asarray(channels, dtype=np.int64), f"{name}/outliers"),
            numpy_helper.from_array(w[channels, :], f"{name}/outlier_weight"),
        ])
        nodes += [
            helper.make_node("Mul", [x, f"{name}/inlier_mask"], [f"{name}/x_in"],
                             name=f"{name}/inliers"),
            helper.make_node("MatMul", [f"{name}/x_in", node.input[1]], [f"{name}/y_in"],
                             name=name),
            helper.make_node("Gather", [x, f"{name}/outliers"], [f"{name}/x_out"], axis=2,
                             name=f"{name}/outlier_channels"),
            helper.make_node("MatMul", [f"{name}/x_out", f"{name}/outlier_weight"],
                             [f"{name}/y_out"], name=f"{name}/outlier_matmul"),
            helper.make_node("Add", [f"{name}/y_in", f"{name}/y_out"], [node.output[0]],
                             name=f"{name}/sum"),
        ]
        outlier_matmuls.append(f"{name}/outlier_matmul")
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(out))
    return outlier_matmuls


def _outliers(channel_max: np.ndarray) -> np.ndarray:
    largest = np.argsort(-channel_max)[:MAX_OUTLIERS]
    return np.sort(largest[channel_max[largest] > OUTLIER_RATIO * np.median(channel_max)])


def quantize_int8(fp32_path: Path, out: Path, tokenizer_path: Path) -> list[str]:
    """Split outliers, then quantize MatMul weights to uint8 (dynamic, per-channel scales).

    Returns the MatMuls left in fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ranges = activation_ranges(fp32_path, tokenizer_path, calibration_sentences())
    split_path = out.with_name(out.stem + ".split.onnx")
    kept = split_outliers(fp32_path, split_path, ranges)
    graph = onnx.load(str(split_path)).graph
    kept += [n.name for n in graph.node
             if n.op_type == "MatMul" and any(n.name.endswith(p) for p in KEEP_FP32_PATTERNS)]
    # DefaultTensorType: shape inference cannot type the outputs of the fused contrib ops.
    # The root-logger level hides onnxruntime's advice to pre-process (it changes nothing here).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(split_path), str(out), weight_type=QuantType.QUInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=kept,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
        split_path.unlink(missing_ok=True)
    log.info("int8: %d MatMuls kept fp32", len(kept))
    return kept
