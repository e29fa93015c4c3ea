"""Exceptions raised by pyembed-db.

Every error derives from :class:`PyembedError`. Errors raised inside the SQL functions reach
Python as :class:`psycopg.Error` subclasses carrying the SQLSTATE; :func:`translate` maps the
``PE***`` SQLSTATEs used by ``sql/functions`` onto the classes below.
"""

from __future__ import annotations


class PyembedError(Exception):
    """Base class of every pyembed-db error."""


class ConfigurationError(PyembedError):
    """The server or environment cannot run pyembed-db (e.g. pgvector missing or too old)."""


class ServerError(PyembedError):
    """The embedded PostgreSQL server could not be started, found or stopped."""


class LoadError(PyembedError):
    """A bulk load was rejected; nothing was written.

    ``row`` is the 1-based data row (header excluded) of the offending record, when known.
    """

    def __init__(self, message: str, *, row: int | None = None, source: str | None = None):
        where = ""
        if source is not None:
            where += f"{source}: "
        if row is not None:
            where += f"row {row}: "
        super().__init__(where + message)
        self.row = row
        self.source = source


class InvalidInputError(PyembedError, ValueError):
    """An argument is malformed: wrong vector dimension, NaN, bad filter, k out of range..."""


class NotFoundError(PyembedError, LookupError):
    """An id (user, item, model) does not exist."""


class MigrationError(PyembedError):
    """A migration was refused (it would drop data without ``force``) or cannot run."""


class ModelError(PyembedError):
    """An embedding model is missing, inconsistent with its checksum, or not active."""


class ConnectionLost(PyembedError):
    """The worker could not reconnect to the database within its give-up time."""


# SQLSTATEs raised by sql/functions (class "PE" is ours) and the exception each becomes.
SQLSTATE_ERRORS: dict[str, type[PyembedError]] = {
    "PE001": ModelError,  # no active embedding model
    "PE002": NotFoundError,  # unknown model
    "PE003": NotFoundError,  # unknown user
    "PE004": NotFoundError,  # unknown item
    "PE005": ModelError,  # model not ready (fewer vectors than the active one, ...)
    "PE010": InvalidInputError,  # malformed filter (unknown key, wrong type)
    "PE011": InvalidInputError,  # bad vector (dimension, NaN/Infinity)
    "PE012": InvalidInputError,  # bad argument (k out of range, ...)
    "22023": InvalidInputError,  # invalid_parameter_value
}


def translate(exc: Exception) -> Exception:
    """Map a psycopg error raised by a pyembed SQL function to a pyembed exception.

    Returns ``exc`` itself when its SQLSTATE is not one of ours, so callers can write
    ``raise translate(exc) from exc``.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    cls = SQLSTATE_ERRORS.get(sqlstate or "")
    if cls is None:
        return exc
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc)
    return cls(message)
