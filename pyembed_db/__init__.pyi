"""Type stub of the public API: the imports `lazy_loader` makes lazy in `__init__.py`."""

from . import migrate
from .config import Settings, load_settings
from .db import connect, create_sa_engine
from .embed import (
    Encoder,
    Reembedded,
    activate_model,
    embed_all,
    list_models,
    load_active_encoder,
    reembed,
    register_default_model,
    register_exported,
    register_model,
    set_model_status,
)
from .errors import (
    ConfigurationError,
    ConnectionLost,
    InvalidInputError,
    LoadError,
    MigrationError,
    ModelError,
    NotFoundError,
    PyembedError,
    ServerError,
)
from .evaluate import evaluate
from .jobs import run_worker
from .load import load_file, load_rows
from .recommend import HistoryEvent, Recommendation, recommend, recommend_items, user_history
from .search import (
    HybridHit,
    SearchHit,
    explain_search,
    search,
    search_items,
    search_similar,
    search_text,
)
from .server import database_url
from .status import DatabaseStatus, database_status
from .training import (
    BehaviorChoice,
    TrainResult,
    train_behavior,
    train_chosen,
    validate_behavior,
)
from .users import refresh_user, refresh_users

__version__: str

__all__ = [
    "MigrationError",
    "BehaviorChoice",
    "ConfigurationError",
    "ConnectionLost",
    "DatabaseStatus",
    "Encoder",
    "HistoryEvent",
    "HybridHit",
    "InvalidInputError",
    "LoadError",
    "ModelError",
    "NotFoundError",
    "PyembedError",
    "Recommendation",
    "Reembedded",
    "SearchHit",
    "ServerError",
    "Settings",
    "TrainResult",
    "activate_model",
    "connect",
    "create_sa_engine",
    "database_status",
    "database_url",
    "embed_all",
    "evaluate",
    "explain_search",
    "list_models",
    "load_active_encoder",
    "load_file",
    "load_rows",
    "load_settings",
    "migrate",
    "recommend",
    "recommend_items",
    "reembed",
    "refresh_user",
    "refresh_users",
    "register_default_model",
    "register_exported",
    "register_model",
    "run_worker",
    "search",
    "search_items",
    "search_similar",
    "search_text",
    "set_model_status",
    "train_behavior",
    "train_chosen",
    "user_history",
    "validate_behavior",
]
