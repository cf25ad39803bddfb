"""SIGINT / SIGTERM (Ctrl-C, a scheduler's preemption): stop at the next safe point, say how to resume.

Inside ``deferred()`` the first signal only sets a flag; ``check()`` raises ``Interrupted`` at the next safe
point (before a training step, a cell, a stage): every result file is written atomically, so what is on disk
is whole. A second signal raises at once. The CLI prints one line (what was interrupted, what is safe on
disk, the command that resumes) and exits 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator

from ..errors import RunError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: int | None = None
_active = False  # inside deferred(): our handler owns SIGINT / SIGTERM
_doing = "starting the run"


class Interrupted(RunError):
    """The run stopped on a signal; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


def doing(what: str) -> None:
    """Name what the run does now (said in the interruption line)."""
    global _doing
    _doing = what


def check() -> None:
    """A safe point: raise ``Interrupted`` if a signal came since ``deferred()`` started."""
    if _pending is not None:
        raise Interrupted(_pending)


def _handler(signum: int, frame: object) -> None:
    global _pending
    again = _pending is not None
    _pending = signum
    if again:  # a second Ctrl-C: the user will not wait for the safe point
        raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Signals become a flag that ``check()`` acts on (main thread only; elsewhere a no-op)."""
    global _pending, _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _pending, _active = None, True
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _pending, _active = None, False


def reclaim() -> None:
    """Take SIGINT / SIGTERM back from Lightning's ``Trainer`` (called once its fit has started).

    Lightning installs its own SIGTERM handler for a fit; with several ranks that handler broadcasts from
    rank 0 inside the signal handler, a collective no other rank joins, so rank 0 hangs and the worker
    ranks and the run lock are left behind. Ours only sets the flag that the next safe point acts on;
    Lightning restores the handler it replaced (ours) when the fit ends.
    """
    if _active and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _handler)


def ignore_in_worker() -> None:
    """Worker ranks leave signals to the launching rank, which stops them once its run folder is safe."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def explain(exc: Interrupted, run_dir: Path, command: str) -> Interrupted:
    """The one line: what was interrupted, what is safe on disk, the exact command that resumes (``command``,
    e.g. ``mcit-bench run ... --resume``: see ``api.run``)."""
    from ..rundir.integrity import read_sealed_json

    try:
        state = read_sealed_json(Path(run_dir) / "state.json", "run state")
        trained = sorted(int(s) for s in state.get("trained", []))
        cells = sum(len(c) for c in state.get("cells", {}).values())
        safe = (f"stages {trained[0]}-{trained[-1]} trained and checkpointed" if trained else "no stage trained yet") \
            + f", {cells} cells evaluated"
    except Exception:  # nothing written yet (or not readable): nothing to reuse
        safe = "nothing to reuse yet"
    return Interrupted(exc.signum, f"interrupted by {signal.Signals(exc.signum).name} while {_doing}; safe on disk "
                                   f"in {run_dir}: {safe}; resume with: {command}")
