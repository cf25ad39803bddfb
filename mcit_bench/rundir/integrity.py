"""Checksummed JSON files: a truncated or edited file is refused when it is read back.

The checksum is the sha256 of the object's canonical JSON (sorted keys, no spaces), stored under
``"sha256"`` in the object itself, so the file stays one plain JSON document a person can read.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json
from ..errors import UserError

CHECKSUM_KEY = "sha256"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (weights, sources of a conversion)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_sealed_json(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Write ``obj`` atomically with its checksum under ``"sha256"``."""
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    atomic_write_json(path, {**body, CHECKSUM_KEY: digest(body)})


def read_sealed_json(path: str | os.PathLike, what: str, legacy_ok: bool = False) -> dict[str, Any]:
    """Read a file written by ``write_sealed_json`` and check its checksum (UserError naming the file).

    ``legacy_ok``: a file without any checksum (written before checksums existed) is returned as it is.
    """
    path = Path(path)
    hint = "restore it from a backup, or move the run folder away to start the run again"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} is missing; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what}: {exc}; {hint}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: {what} is not valid JSON (truncated or damaged: {exc}); {hint}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: {what} must be a JSON object; {hint}")
    stored = data.pop(CHECKSUM_KEY, None)
    if stored is None:
        if legacy_ok:
            return data
        raise UserError(f"{path}: {what} carries no '{CHECKSUM_KEY}' checksum, so it cannot be trusted; {hint}")
    if stored != digest(data):
        raise UserError(f"{path}: checksum mismatch: {what} was edited or damaged after it was written; {hint}")
    return data
