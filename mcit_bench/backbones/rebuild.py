"""``mcit-bench backbone build``: rebuild a built-in backbone from its recipe and print its calibration.

The calibration is what the build records in its sidecar (build time, final pre-training losses), the
built-in benchmark's nearest-prototype task routing on the frozen vision tower (calibration.py),
the recipe tag (``<name>-r<version>-<recipe hash>``, the ``backbone_checkpoint`` of run summaries)
and whether the rebuilt weights are byte-identical (sha256) to the copy shipped with the package.
``--ship`` writes the build into the package, replacing the shipped copy of an earlier recipe.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import UserError
from . import BUILTIN_BACKBONES, SHIPPED_ROOT, shipped_folder
from .llava import SIDECAR
from .manifest import MAX_FILE_BYTES, oversized_files, read_manifest, verify_folder

WEIGHTS_SUFFIX = ".safetensors"


def _target(name: str, tag: str, output: str | None, ship: bool) -> Path:
    from .tiny_llava import cache_root

    if ship and output:
        raise UserError("backbone build: give --output or --ship, not both")
    folder = SHIPPED_ROOT / tag if ship else Path(output).expanduser() if output else cache_root() / "backbones" / tag
    # The build replaces the folder: never let it delete something that is not an earlier build.
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / SIDECAR).is_file())):
        raise UserError(f"backbone build --output {str(folder)!r}: exists and is not a backbone build; "
                        f"give a new or empty folder")
    return folder


def compare_weights(built: dict[str, str], shipped: dict[str, str] | None) -> str:
    """One line: are the rebuilt weight files the shipped ones (by sha256)?"""
    if shipped is None:
        return "no shipped copy of this recipe to compare with"
    weights = sorted(rel for rel in set(built) | set(shipped) if rel.endswith(WEIGHTS_SUFFIX))
    differ = [rel for rel in weights if built.get(rel) != shipped.get(rel)]
    if not differ:
        return f"identical to the shipped copy (sha256 of {', '.join(weights)})"
    return f"DIFFER from the shipped copy: {', '.join(differ)}"


def build_builtin(name: str, output: str | None = None, ship: bool = False, progress: bool = True) -> int:
    from .tiny_llava import TinyRecipe, build_tiny_backbone, recipe_tag

    if name not in BUILTIN_BACKBONES:
        raise UserError(f"backbone build --name {name!r}: expected one of {', '.join(BUILTIN_BACKBONES)}")
    recipe = TinyRecipe(**BUILTIN_BACKBONES[name])
    tag = recipe_tag(recipe, name)
    folder = _target(name, tag, output, ship)
    shipped = shipped_folder(name)
    shipped_sums = verify_folder(shipped) if shipped is not None else None  # read before --ship replaces it
    import transformers.utils.logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers' "Writing model shards" bars: the build has its own
    build_tiny_backbone(folder, recipe, progress=progress)
    built = read_manifest(folder)
    sidecar = json.loads((folder / SIDECAR).read_text())
    if ship:
        too_big = oversized_files(folder)
        if too_big:
            shutil.rmtree(folder)
            raise UserError(f"backbone build --ship: {', '.join(too_big)} is {MAX_FILE_BYTES >> 20} MB or more; "
                            f"shipped files must stay below (save the weights in shards)")
        for old in SHIPPED_ROOT.glob(f"{name}-r*"):
            if old != folder:
                shutil.rmtree(old)  # the shipped copy of an earlier recipe
    losses = ", ".join(f"{key[len('final_'):]} {value:.4f}" for key, value in sidecar.items()
                       if key.startswith("final_") and isinstance(value, (int, float)))
    print(f"backbone {name}: recipe {tag}\n"
          f"  written to {folder}\n"
          f"  build time {sidecar.get('build_seconds')} s; final losses: {losses or 'n/a'}\n"
          f"  weights: {compare_weights(built, shipped_sums)}\n"
          f"  {routing_line(folder)}", flush=True)
    return 0


def routing_line(folder: Path) -> str:
    """The built-in benchmark's nearest-prototype routing per task on the build's frozen vision tower."""
    from .calibration import BUILTIN_TEST, builtin_routing
    from .llava import Backbone

    accuracy = builtin_routing(Backbone.from_pretrained(folder))
    cells = ", ".join(f"{task} {value:.0f}" for task, value in accuracy.items())
    return f"nearest-prototype routing on frozen vision features (% of {BUILTIN_TEST} test images per task): {cells}"
