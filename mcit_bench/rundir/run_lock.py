"""One writer per run folder: ``run.lock`` holds the writer's pid and host under an OS lock.

The lock is ``fcntl.flock`` on the file, which the kernel drops when its process dies, so the lock
of a killed job (SIGKILL, OOM, a lost node) is stale the moment the job is gone and the next job
takes it over; the pid and host written inside only name the holder in the error message. The record
also holds the boot id and the process's start time (``/proc``), so that where ``flock`` is not supported
(some network filesystems) a reused pid, or a pid of an earlier boot, is never taken for the owner.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import RunError

LOCK_FILE = "run.lock"


def process_identity(pid: int) -> dict[str, Any]:
    """Boot id and start time (clock ticks since boot) of ``pid``: with the host, they name one process."""
    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    stat = read(f"/proc/{pid}/stat")
    start = stat.rsplit(")", 1)[1].split()[19] if stat else None  # field 22: starttime
    return {"boot_id": read("/proc/sys/kernel/random/boot_id"), "start_time": start}


def holder_alive(info: dict[str, Any]) -> bool:
    """Whether the process recorded in a lock file still runs (same host, same boot, same start time)."""
    if info.get("host") != socket.gethostname():
        return True  # cannot tell from here: assume it runs
    now = process_identity(int(info["pid"]))
    if now["start_time"] is None:
        return False
    return info.get("boot_id") == now["boot_id"] and info.get("start_time") == now["start_time"]


class FolderLocked(RunError):
    """Another live process writes this folder."""


class RunLock:
    """``with RunLock(folder): ...``: exclusive use of ``folder`` by this process (re-entrant per path)."""

    _held: dict[str, int] = {}  # lock path -> depth of nested holds in this process

    def __init__(self, folder: Path, what: str = "run") -> None:
        self.path = Path(folder) / LOCK_FILE
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        key = str(self.path.resolve())
        if key in RunLock._held:
            RunLock._held[key] += 1
            return self
        try:
            self._fd = self._lock()
        except OSError as exc:  # an unwritable or full folder: one line naming it, like any other write
            raise RunError(f"{self.path}: cannot create the run's lock file: {exc.strerror or exc}") from None
        RunLock._held[key] = 1
        return self

    def _lock(self) -> int:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
                    self._check_record()  # no flock on this filesystem: the record decides
            except BlockingIOError:
                os.close(fd)
                raise FolderLocked(f"{self.path.parent}: in use by another {self._holder()}; wait for it to "
                                   f"finish, or stop it first (its lock: {self.path})") from None
            try:  # the holder we waited on may have removed the file meanwhile: lock the file that is there
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **process_identity(os.getpid())}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        except OSError:
            os.close(fd)
            raise
        return fd

    def _check_record(self) -> None:
        """Without flock: refuse only when the recorded holder is this very process, still running."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return
        if isinstance(info, dict) and "pid" in info and holder_alive(info):
            raise BlockingIOError

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"{info.get('what', 'job')} (pid {info['pid']} on host {info['host']}, since {info.get('since')})"
        except (OSError, ValueError, KeyError, TypeError):
            return "job (holder not yet recorded)"

    def release(self) -> None:
        key = str(self.path.resolve())
        if RunLock._held.get(key, 0) > 1:
            RunLock._held[key] -= 1
            return
        RunLock._held.pop(key, None)
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiter then sees a new file, not this one
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def lock_unless_secondary(folder: Path, what: str) -> Any:
    """The folder's lock in the launching (rank-0) process; nothing in the other ranks of a multi-device
    launch, which re-run the same command while rank 0 holds the lock."""
    if any(os.environ.get(name, "0") not in ("", "0") for name in _RANK_VARIABLES):
        return contextlib.nullcontext()
    return RunLock(folder, what)
