"""Identifiers: minted here, and checked before they reach SQL.

Ids are opaque text (`run_…`, `conv_…`, `key_…`, `doc_…`): 128 random bits,
so they cannot be enumerated. An id that could never have been minted (wrong
characters, too long, a NUL byte) is answered 404 like an unknown one, without
a database round trip and without ever becoming a 500.
"""

from __future__ import annotations

import re
import uuid

from relay_core.errors import ApiError

_VALID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def is_valid(value: str) -> bool:
    return _VALID.fullmatch(value) is not None


def require(value: str, what: str) -> str:
    """The id itself, or ApiError(404) when it is malformed."""
    if not is_valid(value):
        raise ApiError(404, f"{what} not found")
    return value


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
