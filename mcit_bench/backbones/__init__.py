"""Backbone names: built-in tiny backbones by name, anything else a local folder or a cached HF id.

mcit-bench never downloads: an HF id must already be in the local Hugging Face cache. The built-in
``tiny-llava`` ships already built inside the package (``shipped/<recipe tag>/``, loaded from there,
read-only), so every machine starts from the same weights; its ``SHA256SUMS`` is checked on every load.
A built-in without a shipped copy of its current recipe is built on first use into the user cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .manifest import MANIFEST, verify_folder

# name -> recipe overrides of the tiny backbone (see tiny_llava.TinyRecipe)
BUILTIN_BACKBONES: dict[str, dict[str, Any]] = {
    "tiny-llava": {},
}


# Folders of built-in backbones that ship with the package, named by their recipe tag.
SHIPPED_ROOT = Path(__file__).with_name("shipped")


def shipped_folder(name: str) -> Path | None:
    """The package's copy of built-in ``name`` for its current recipe, or None (then it is built on demand)."""
    if name not in BUILTIN_BACKBONES:
        return None
    from .tiny_llava import TinyRecipe, recipe_tag

    folder = SHIPPED_ROOT / recipe_tag(TinyRecipe(**BUILTIN_BACKBONES[name]), name)
    return folder if (folder / "config.json").is_file() else None


def _hf_cached(name: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


def check_backbone(spec: str) -> None:
    """Raise UserError unless ``spec`` names a built-in backbone, a folder or a cached HF id (cheap)."""
    if spec in BUILTIN_BACKBONES:
        shipped = shipped_folder(spec)
        if shipped is not None:
            verify_folder(shipped)
        return
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"backbone folder {str(path)!r} has no config.json (expected a save_pretrained folder)")
        if (path / MANIFEST).is_file():  # a copy of a harness build: its files must be the ones it lists
            verify_folder(path)
        check_safetensors(path)
        return
    if "/" in spec and not spec.startswith((".", "/")) and _hf_cached(spec) is not None:
        return
    raise UserError(f"unknown backbone {spec!r}: not a built-in ({', '.join(BUILTIN_BACKBONES)}), not a folder, "
                    f"and not in the local Hugging Face cache (mcit-bench never downloads)")


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_safetensors(folder: Path) -> None:
    """Weights are loaded from safetensors only (``use_safetensors=True``): a pickle checkpoint can run code
    when it is loaded, so a folder with only pickle weights is refused with the way to convert it."""
    if any(folder.rglob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern))
    if pickles:
        raise UserError(f"backbone folder {str(folder)!r} holds only pickle weights ({', '.join(pickles)}); mcit-bench "
                        f"loads safetensors only (a pickle can run code when loaded): convert it once where you trust "
                        f"the file, e.g. `Model.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)`")


def backbone_path(spec: str, progress: bool = True) -> Path:
    """Folder to ``from_pretrained``: the shipped copy of a built-in, else its cached build (built on first use)."""
    check_backbone(spec)
    if spec in BUILTIN_BACKBONES:
        from .tiny_llava import TinyRecipe, tiny_backbone_path

        shipped = shipped_folder(spec)
        if shipped is not None:
            return shipped
        folder = tiny_backbone_path(TinyRecipe(**BUILTIN_BACKBONES[spec]), name=spec, progress=progress)
        if (folder / MANIFEST).is_file():
            verify_folder(folder)
        return folder
    path = Path(spec).expanduser()
    return path if path.is_dir() else _hf_cached(spec)  # type: ignore[return-value]


def load_backbone(spec: str, progress: bool = True, **kwargs: Any):
    from .llava import Backbone

    return Backbone.from_pretrained(backbone_path(spec, progress=progress), **kwargs)
