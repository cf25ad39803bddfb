"""Faults a cluster job meets: corrupt or foreign files on resume, divergence, a second writer, a full disk."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mcit_bench.cli import main
from mcit_bench.rundir.integrity import read_sealed_json, write_sealed_json

from conftest import BACKBONE, assert_every_file_parses, stop_after_stage

TINY = ["--preset", "quick", "--backbone", BACKBONE, "--logger", "none", "--quiet", "--set", "test_size=2",
        "--set", "train_size=8", "--set", "steps_per_task=3"]


def short_order(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "short.yaml"
    path.write_text("tasks: [styles, chart]\n")
    return str(path)


def run_args(tmp_path: Path, *extra: str, method: str = "lora-ft") -> list[str]:
    return ["run", "--method", method, "--order", short_order(tmp_path), "--output", str(tmp_path / "run"),
            *TINY, *extra]


def cli(capsys, args: list[str]) -> tuple[int, str]:
    """Exit code and the CLI's error line(s) (stderr also carries library progress bars)."""
    code = main(args)
    return code, "\n".join(line for line in capsys.readouterr().err.splitlines() if line.startswith("mcit-bench:"))


@pytest.fixture
def partial(tmp_path: Path, tiny_backbone: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run of two tasks stopped after stage 1 (state.json and the stage-1 checkpoint on disk)."""
    stop_after_stage(monkeypatch, 1)
    with pytest.raises(SystemExit):
        main(run_args(tmp_path))
    stop_after_stage(monkeypatch, None)
    return tmp_path / "run"


def test_damaged_state_or_checkpoint_is_refused_by_name(tmp_path: Path, partial: Path, capsys) -> None:
    run = partial
    state, ck_json, ck_tensors = run / "state.json", run / "checkpoints" / "stage1.json", \
        run / "checkpoints" / "stage1.safetensors"
    originals = {p: p.read_bytes() for p in (state, ck_json, ck_tensors)}
    data = json.loads(state.read_text())
    edited = json.loads(state.read_text())
    edited["cells"]["1"]["styles"]["score"] = 99.0  # valid JSON, plausible value: only the checksum tells
    unsealed = {k: v for k, v in data.items() if k != "sha256"}
    damages = [
        (state, json.dumps(edited).encode(), "checksum mismatch"),
        (state, originals[state][: len(originals[state]) // 2], "not valid JSON"),
        (state, json.dumps(unsealed).encode(), "no 'sha256' checksum"),
        (ck_tensors, originals[ck_tensors][:-100], "checksum mismatch"),
        (ck_json, originals[ck_json].replace(b'"current_task": 0', b'"current_task": 1'), "checksum mismatch"),
        (ck_json, b"", "not valid JSON"),
    ]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p not in originals}
    for path, content, needle in damages:
        path.write_bytes(content)
        code, err = cli(capsys, run_args(tmp_path, "--resume"))
        assert code == 2 and str(path) in err and needle in err and len(err.splitlines()) == 1, (path, err)
        path.write_bytes(originals[path])
    # refused means untouched: no restart from zero wrote anything
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p not in originals} == before
    assert main(run_args(tmp_path, "--resume")) == 0
    assert read_sealed_json(state, "run state")["complete"] is True


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_checkpoint_carrying_a_pickle_is_refused_and_never_run(tmp_path: Path, partial: Path, capsys) -> None:
    import hashlib

    import torch

    marker = tmp_path / "code-ran"
    ck_json, ck_tensors = partial / "checkpoints" / "stage1.json", partial / "checkpoints" / "stage1.safetensors"
    torch.save({"tensors": {}, "extra": {"current_task": 0, "x": _Payload(marker)}, "name": "lora-ft"}, ck_tensors)
    # the forger also fixes the checksums: the file format alone must keep the code from running
    meta = read_sealed_json(ck_json, "checkpoint")
    meta["tensors_sha256"] = hashlib.sha256(ck_tensors.read_bytes()).hexdigest()
    write_sealed_json(ck_json, meta)
    code, err = cli(capsys, run_args(tmp_path, "--resume"))
    assert code == 2 and str(ck_tensors) in err and "not a valid safetensors file" in err
    assert not marker.exists()
    # a checkpoint of the old pickle format (stage1.pt) is refused by name, never unpickled
    ck_json.unlink()
    ck_tensors.rename(partial / "checkpoints" / "stage1.pt")
    code, err = cli(capsys, run_args(tmp_path, "--resume"))
    assert code == 2 and "stage1.pt" in err and "pickle" in err and not marker.exists()


def test_no_pickle_loading_in_the_package() -> None:
    package = Path(__file__).resolve().parents[1] / "mcit_bench"
    offenders = [p.name for p in package.rglob("*.py") if any(call in p.read_text() for call in
                                                              ("torch.load(", "pickle.load", "weights_only=False"))]
    assert offenders == []


def test_divergence_stops_the_run_and_resume_with_a_smaller_lr_continues(tmp_path: Path, partial: Path,
                                                                         capsys) -> None:
    run = partial
    kept = {p: p.stat().st_mtime_ns for p in (run / "checkpoints" / "stage1.safetensors",
                                              run / "predictions" / "stage1" / "styles.jsonl")}
    start_lr = __import__("yaml").safe_load((run / "config.yaml").read_text())["hparams"]["lr"]
    code, err = cli(capsys, run_args(tmp_path, "--resume", "--set", "lr=1e30"))
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "non-finite loss" in err and "stage 2 (task 'chart')" in err and "step 2 of 3" in err
    assert "lr=1e+30" in err and "grad_clip=" in err and "--resume --set lr=" in err
    state = read_sealed_json(run / "state.json", "run state")
    assert state["trained"] == [1] and not state["complete"]  # the diverged stage is not marked trained
    assert not (run / "checkpoints" / "stage2.json").exists() and "2" not in state["cells"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] is False  # never a result
    assert main(run_args(tmp_path, "--resume", "--set", "lr=5e-4")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and summary["hparam_changes"] == [{"from_stage": 2, "set": {"lr": 5e-4}}]
    config = __import__("yaml").safe_load((run / "config.yaml").read_text())
    # stage 1 ran with the starting value, still in hparams; the failed attempt (1e30) left no record
    assert config["hparams"]["lr"] == start_lr and config["hparam_changes"] == summary["hparam_changes"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_resume_refuses_changes_that_make_another_experiment(tmp_path: Path, partial: Path, capsys) -> None:
    for extra, needle in ((["--set", "lora_r=2"], "lora_r=2"), (["--seed", "1"], "seed=1"),
                          (["--set", "test_size=3"], "test_size=3"), (["--eval", "lower"], "eval_mode='lower'")):
        code, err = cli(capsys, run_args(tmp_path, "--resume", *extra))
        assert code == 2 and needle in err and "config.yaml" in err, err


_HOLDER = """
import sys, time
from pathlib import Path
from mcit_bench.rundir.run_lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_writer_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path: Path, tiny_backbone: Path,
                                                                        capsys) -> None:
    import socket

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = cli(capsys, run_args(tmp_path))
        assert code == 1 and f"pid {holder.pid} on host {socket.gethostname()}" in err and str(run) in err
        assert len(err.splitlines()) == 1 and not (run / "config.yaml").exists()
        # a sweep skips the busy folder (and says who holds it) instead of writing it too
        root = tmp_path / "runs"
        folder = root / "synthetic" / "zero-shot" / "order-short-seed0"
        sweep_holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
        assert sweep_holder.stdout.readline().strip() == "locked"
        code = main(["sweep", "--methods", "zero-shot", "--orders", short_order(tmp_path), "--root", str(root),
                     *[a for a in TINY if a != "--quiet"]])
        sweep_holder.kill()
        sweep_holder.wait()
        out = capsys.readouterr().out
        assert code == 1 and f"skipped: {folder}: in use by another run (pid {sweep_holder.pid}" in out
        assert "1 busy" in out and not (folder / "state.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((run / "run.lock").read_text())["pid"] == holder.pid  # stale: its process is gone
    assert main(run_args(tmp_path, method="zero-shot")) == 0
    assert not (run / "run.lock").exists()


def test_full_disk_stops_with_the_path_and_damages_nothing(tmp_path: Path, tiny_backbone: Path,
                                                           monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real_write = os.write
    written = [0]

    def counting(fd: int, data) -> int:
        written[0] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting)
    full = tmp_path / "full"
    assert main(run_args(full)) == 0
    total = written[0]
    reference = (full / "run" / "accuracy.csv").read_text()

    for fraction in (0.35, 0.8):
        budget = [int(total * fraction)]

        def disk(fd: int, data) -> int:  # writes succeed until the disk is full, then ENOSPC (after a short write)
            if budget[0] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = real_write(fd, bytes(data[: budget[0]]))
            budget[0] -= n
            return n

        cut = tmp_path / f"cut{fraction}"
        monkeypatch.setattr(os, "write", disk)
        code, err = cli(capsys, run_args(cut))
        monkeypatch.setattr(os, "write", real_write)
        assert code == 1 and len(err.splitlines()) == 1 and "No space left on device" in err, err
        assert "cannot write " + str(cut / "run") in err
        assert_every_file_parses(cut / "run")
        if (cut / "run" / "state.json").exists():
            read_sealed_json(cut / "run" / "state.json", "run state")  # intact, checksum and all
        assert main(run_args(cut, "--resume")) == 0
        assert (cut / "run" / "accuracy.csv").read_text() == reference


def test_a_destroyed_model_with_a_finite_loss_stops_the_run(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    """lr=1e6: the loss sits at ln(512), the uniform distribution; never a result (exit 1, not trained)."""
    code, err = cli(capsys, run_args(tmp_path, "--set", "lr=1e6"))
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "ln(vocabulary size) = 6.2383" in err and "stage 1 (task 'styles')" in err and "--resume --set lr=" in err
    state = read_sealed_json(tmp_path / "run" / "state.json", "run state")
    assert state["trained"] == [] and not state["complete"]
    assert state["stopped"]["reason"] == "diverged" and state["stopped"]["stage"] == 1
    assert not (tmp_path / "run" / "checkpoints").exists()
    # the leaderboard names the folder and why it is left out
    assert main(["leaderboard", str(tmp_path), "--output", str(tmp_path / "board.md")]) == 2  # nothing complete
    assert f"; skipped {tmp_path / 'run'}: diverged at stage 1" in capsys.readouterr().err


def test_resume_without_state_refuses_and_overwrites_nothing(tmp_path: Path, partial: Path, capsys) -> None:
    (partial / "state.json").unlink()
    files = {p: p.read_bytes() for p in partial.rglob("*") if p.is_file() and "logs" not in p.parts}
    code, err = cli(capsys, run_args(tmp_path, "--resume"))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "state.json is missing" in err and "checkpoints, predictions, accuracy.csv, summary.json" in err
    code, err = cli(capsys, run_args(tmp_path))  # a fresh run into it: refused the same way, says how to start over
    assert code == 2 and "another run's files" in err and "rm -r" in err, err
    assert {p: p.read_bytes() for p in partial.rglob("*") if p.is_file() and "logs" not in p.parts} == files


def test_backbone_folder_with_only_pickle_weights_is_refused(tmp_path: Path, tiny_backbone: Path, capsys) -> None:
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_backbone, folder)
    for weights in folder.rglob("*.safetensors"):
        weights.rename(weights.with_name("pytorch_model.bin"))
    (folder / "SHA256SUMS").unlink(missing_ok=True)
    code, err = cli(capsys, run_args(tmp_path, "--backbone", str(folder)))
    assert code == 2 and "only pickle weights (pytorch_model.bin)" in err and "safe_serialization=True" in err, err
    assert not (tmp_path / "run").exists()


def test_lock_record_tells_a_reused_pid_from_its_owner(tmp_path: Path) -> None:
    from mcit_bench.rundir.run_lock import RunLock, holder_alive

    with RunLock(tmp_path):
        info = json.loads((tmp_path / "run.lock").read_text())
        assert info["boot_id"] and info["start_time"] and holder_alive(info)
        assert not holder_alive({**info, "start_time": str(int(info["start_time"]) - 1)})  # same pid, another process
        assert not holder_alive({**info, "boot_id": "another-boot"})


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_says_how_to_resume_and_resume_finishes(tmp_path: Path, tiny_backbone: Path,
                                                                    sig: int, code: int) -> None:
    import time

    args = run_args(tmp_path)
    child = subprocess.Popen([sys.executable, "-m", "mcit_bench.cli", *args], stderr=subprocess.PIPE, text=True)
    run = tmp_path / "run"
    deadline = time.time() + 300
    while not (run / "state.json").exists() and time.time() < deadline:  # stop it once real work runs
        time.sleep(0.05)
    child.send_signal(sig)
    err = child.communicate(timeout=300)[1]
    lines = [line for line in err.splitlines() if line.startswith("mcit-bench:")]
    assert child.returncode == code, err[-2000:]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0], lines
    assert "safe on disk" in lines[0] and lines[0].endswith(" --resume") and str(run) in lines[0]
    assert not (run / "run.lock").exists()
    assert_every_file_parses(run)
    out = subprocess.run([sys.executable, "-m", "mcit_bench.cli", *[a for a in args if a != "--quiet"], "--resume"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "resuming at stage " in out.stdout, out.stderr[-2000:]
