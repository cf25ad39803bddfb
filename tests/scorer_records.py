"""Shared helpers for the scorer tests."""
from __future__ import annotations

from typing import Any


def rec(target: str = "", uid: str = "u", **kw: Any) -> dict:
    """A canonical test record with defaults for the fields a test does not care about."""
    record = {"uid": uid, "target": target, "references": [], "choices": None, "bbox": None,
              "image_size": None, "meta": {}}
    record.update(kw)
    return record
