"""Strategy checkpoints at task boundaries: tensors as safetensors, everything else as checksummed JSON.

``checkpoints/stage<t>.safetensors``: the strategy's tensors (state-dict keys), plus every tensor found
inside ``extra_state()`` (e.g. Fwd-Prompt's ``core_bases``) under reserved keys ``__extra__.<n>``.
``checkpoints/stage<t>.json``: method name, stage, ``extra_state()`` with each tensor replaced by
``{"__tensor__": "<key>"}``, the sha256 of the safetensors file, and its own sha256.

Loading parses JSON and safetensors only, so a run folder copied from elsewhere cannot run code
(pickle, which torch would execute on load, is never read).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes
from ..errors import UserError
from .integrity import read_sealed_json, sha256_bytes, write_sealed_json

FORMAT = "mcit-bench-checkpoint/1"
EXTRA_PREFIX = "__extra__."
TENSOR_REF = "__tensor__"


def checkpoint_paths(run_dir: Path, stage: int) -> tuple[Path, Path]:
    """(JSON file, safetensors file) of ``stage``."""
    folder = Path(run_dir) / "checkpoints"
    return folder / f"stage{stage}.json", folder / f"stage{stage}.safetensors"


def _pack(value: Any, tensors: dict[str, Any], where: str) -> Any:
    """``value`` as JSON, each tensor moved into ``tensors`` under a reserved key."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        key = f"{EXTRA_PREFIX}{sum(k.startswith(EXTRA_PREFIX) for k in tensors)}"
        tensors[key] = value.detach().cpu().clone().contiguous()
        return {TENSOR_REF: key}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value) or TENSOR_REF in value:
            raise TypeError(f"extra_state{where}: dict keys must be strings (and not {TENSOR_REF!r}) "
                            "to be stored as JSON")
        return {k: _pack(v, tensors, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"extra_state{where}: a {type(value).__name__} cannot be stored in a checkpoint "
                    "(JSON values and tensors only)")


def _unpack(value: Any, tensors: dict[str, Any], path: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR_REF}:
            key = value[TENSOR_REF]
            if key not in tensors:
                raise UserError(f"{path}: refers to tensor {key!r}, which its safetensors file does not hold")
            return tensors.pop(key)
        return {k: _unpack(v, tensors, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, tensors, path) for v in value]
    return value


def save_checkpoint(run_dir: Path, stage: int, strategy: Any) -> None:
    """Write stage ``stage``'s checkpoint: the tensors first, then the JSON that vouches for them."""
    from safetensors.torch import save

    ckpt = strategy.checkpoint()
    tensors = {k: v.contiguous() for k, v in ckpt["tensors"].items()}
    extra = _pack(ckpt["extra"], tensors, "")
    data = save(tensors)
    json_path, tensor_path = checkpoint_paths(run_dir, stage)
    atomic_write_bytes(tensor_path, data)
    write_sealed_json(json_path, {"format": FORMAT, "method": ckpt["name"], "stage": stage,
                                  "tensors_file": tensor_path.name, "tensors_sha256": sha256_bytes(data),
                                  "extra": extra})


def _read_verified(run_dir: Path, stage: int) -> tuple[dict[str, Any], bytes, Path]:
    json_path, tensor_path = checkpoint_paths(run_dir, stage)
    legacy = json_path.with_suffix(".pt")
    if not json_path.exists() and legacy.exists():
        raise UserError(f"{legacy}: a pickle checkpoint (older mcit-bench); pickle can run code, so mcit-bench "
                        "loads only safetensors + JSON checkpoints: move the run folder away and rerun it")
    meta = read_sealed_json(json_path, "checkpoint")
    if meta.get("format") != FORMAT or meta.get("stage") != stage or meta.get("tensors_file") != tensor_path.name:
        raise UserError(f"{json_path}: not a stage-{stage} checkpoint of format {FORMAT} "
                        f"(format {meta.get('format')!r}, stage {meta.get('stage')!r})")
    try:
        data = tensor_path.read_bytes()
    except OSError as exc:
        raise UserError(f"{tensor_path}: cannot read checkpoint tensors: {exc.strerror or exc}") from None
    if sha256_bytes(data) != meta.get("tensors_sha256"):
        raise UserError(f"{tensor_path}: checksum mismatch: the checkpoint tensors were truncated or edited "
                        f"after they were written (expected sha256 {meta.get('tensors_sha256')})")
    return meta, data, tensor_path


def verify_checkpoint(run_dir: Path, stage: int) -> None:
    """Check stage ``stage``'s checkpoint files and checksums (UserError naming the bad file)."""
    _read_verified(run_dir, stage)


def load_checkpoint(run_dir: Path, stage: int) -> dict[str, Any]:
    """Stage ``stage``'s checkpoint as ``Strategy.checkpoint()`` gave it: ``{"tensors", "extra", "name"}``."""
    from safetensors.torch import load

    meta, data, tensor_path = _read_verified(run_dir, stage)
    try:
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type on a malformed file
        raise UserError(f"{tensor_path}: not a valid safetensors file ({str(exc).splitlines()[0]})") from None
    extra = _unpack(meta["extra"], tensors, checkpoint_paths(run_dir, stage)[0])
    stray = sorted(k for k in tensors if k.startswith(EXTRA_PREFIX))
    if stray:
        raise UserError(f"{tensor_path}: holds tensors its JSON file does not refer to: {stray[:3]}")
    return {"tensors": tensors, "extra": extra, "name": meta.get("method")}
