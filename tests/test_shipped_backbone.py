"""The built-in tiny-llava ships built with the package: checked by sha256 on load, never rebuilt on a run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mcit_bench.backbones as backbones
from mcit_bench.backbones.manifest import MANIFEST, MAX_FILE_BYTES, folder_files, read_manifest, verify_folder
from mcit_bench.backbones.rebuild import compare_weights
from mcit_bench.backbones.tiny_llava import recipe_tag
from mcit_bench.cli import main


def _shipped() -> Path:
    folder = backbones.shipped_folder("tiny-llava")
    assert folder is not None, (f"no shipped copy of the current recipe {recipe_tag()} in {backbones.SHIPPED_ROOT}: "
                                f"run `mcit-bench backbone build --ship` after changing the recipe")
    return folder


def _corrupt_copy(tmp_path: Path, rel: str = "model.safetensors") -> Path:
    copy = tmp_path / "shipped" / _shipped().name
    shutil.copytree(_shipped(), copy)
    path = copy / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    return copy


def _order(tmp_path: Path) -> str:
    path = tmp_path / "order.yaml"
    path.write_text("tasks: [icons, chart]\n")
    return str(path)


def test_shipped_copy_is_the_current_recipe_small_files_all_listed() -> None:
    folder = _shipped()
    assert folder.name == recipe_tag()  # the run summary's backbone_checkpoint
    assert sorted(read_manifest(folder)) == folder_files(folder)
    assert all((folder / rel).stat().st_size < MAX_FILE_BYTES for rel in folder_files(folder))
    verify_folder(folder)


@pytest.mark.parametrize("via", ["folder", "builtin"])
def test_corrupted_copy_is_refused_with_one_line(tmp_path: Path, via: str, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _corrupt_copy(tmp_path)
    if via == "builtin":  # the package's own copy corrupted: `--backbone tiny-llava`
        monkeypatch.setattr(backbones, "SHIPPED_ROOT", copy.parent)
    spec = "tiny-llava" if via == "builtin" else str(copy)
    out = tmp_path / "run"
    code = main(["run", "--method", "lora-ft", "--order", _order(tmp_path), "--backbone", spec, "--preset", "quick",
                 "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "model.safetensors" in err and MANIFEST in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


def test_missing_listed_file_is_named(tmp_path: Path) -> None:
    copy = _corrupt_copy(tmp_path)
    (copy / "clip" / "tokenizer.json").unlink()
    with pytest.raises(Exception, match=r"clip/tokenizer.json is missing"):
        verify_folder(copy)


def test_fresh_run_of_builtin_uses_shipped_weights_without_building(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from mcit_bench.backbones import tiny_llava

    cache = tmp_path / "empty-cache"
    monkeypatch.setenv("MCIT_BENCH_CACHE", str(cache))

    def no_build(*args, **kwargs):
        raise AssertionError("the built-in backbone was rebuilt")

    monkeypatch.setattr(tiny_llava, "build_tiny_backbone", no_build)
    out = tmp_path / "run"
    assert main(["run", "--method", "lora-ft", "--order", _order(tmp_path), "--preset", "quick",
                 "--output", str(out), "--quiet", "--logger", "none"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone"] == "tiny-llava" and summary["backbone_checkpoint"] == recipe_tag()
    assert not (cache / "backbones").exists()


def test_backbone_build_prints_its_calibration(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A built-in with the smallest recipe that still runs every build step: the command, not the recipe, is tested.
    monkeypatch.setitem(backbones.BUILTIN_BACKBONES, "tiny-llava-nano",
                        {"clip_steps": 2, "lm_steps": 2, "pretrain_pool": 32, "warmup": 1})
    out = tmp_path / "nano"
    assert main(["backbone", "build", "--name", "tiny-llava-nano", "--output", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "recipe tiny-llava-nano-r" in text and f"written to {out}" in text
    assert "build time" in text and "final losses: clip_loss" in text and "lm_loss" in text
    assert "no shipped copy" in text  # only tiny-llava ships; the others are built on demand
    assert "nearest-prototype routing on frozen vision features" in text and "scene_caption" in text
    verify_folder(out)  # every build writes its SHA256SUMS
    (tmp_path / "notabuild").mkdir()
    (tmp_path / "notabuild" / "keep.txt").write_text("mine")
    assert main(["backbone", "build", "--name", "tiny-llava-nano", "--output", str(tmp_path / "notabuild"),
                 "--quiet"]) == 2
    assert (tmp_path / "notabuild" / "keep.txt").is_file()


def test_weight_comparison_by_sha256() -> None:
    shipped = {"model.safetensors": "a" * 64, "clip/model.safetensors": "b" * 64, "config.json": "c" * 64}
    assert compare_weights(dict(shipped, **{"config.json": "d" * 64}), shipped).startswith("identical")
    assert "clip/model.safetensors" in compare_weights(dict(shipped, **{"clip/model.safetensors": "e" * 64}), shipped)
    assert compare_weights(shipped, None).startswith("no shipped copy")
