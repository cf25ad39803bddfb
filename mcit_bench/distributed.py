"""Runs on several processes: one launch for the whole task sequence, ranks in step, rank 0 writes.

How a run starts on N = ``--num-nodes`` x ``--devices`` processes:

* ``mcit_bench.run(config)`` with ``devices=N, strategy="ddp"`` (what ``mcit-bench run``, ``sweep``,
  ``ceiling`` and ``tune`` call; one machine): the calling process validates the configuration, checks the
  run folder and plans ``--resume`` ONCE, then ``launch(ranks, config)`` writes the configuration
  (``RunConfig.to_dict()``, JSON) to a file and starts ranks 1..N-1 as ``python -m mcit_bench.worker FILE``
  with the torch.distributed variables (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK,
  NODE_RANK) and ``MCIT_BENCH_WORKER=1`` (a worker of an already planned run: it skips the run-folder
  checks and never writes). No command line is rebuilt. The caller becomes rank 0 itself. Every rank
  then runs the whole task sequence; each ``Trainer.fit`` finds the processes already there (Lightning
  reads the same variables) and launches nothing. A watchdog stops the run with a clear message when a
  rank dies; resuming continues it.
* Under ``torchrun`` or SLURM (``srun``) the processes exist already: Lightning's cluster environments
  detect them, rank 0 plans and checks, the others follow.

Helpers (identity on one process): ``all_reduce``, ``all_gather``, ``broadcast``, ``shard``.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .config import RunConfig

WORKER_ENV = "MCIT_BENCH_WORKER"
DDP_LIKE = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false", "fsdp")


@dataclass
class Ranks:
    """This process's place in the run."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    launcher: bool = False  # this process starts the others (and is rank 0)
    worker: bool = False  # started by an mcit-bench launcher: the run is planned already

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def _devices_count(devices: Any) -> int:
    if isinstance(devices, int):
        return devices
    text = str(devices)
    if text.isdigit():
        return int(text)
    if "," in text or text.startswith("["):
        return len([d for d in text.strip("[]").split(",") if d.strip()])
    return 1  # "auto" / -1: Lightning decides; mcit-bench launches one process


def _cluster_environment() -> Any | None:
    """Lightning's environment when the processes were started outside mcit-bench (torchrun, SLURM)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return TorchElasticEnvironment()
    if SLURMEnvironment.detect() and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return SLURMEnvironment()
    return None


def detect(devices: Any, num_nodes: int, strategy: str) -> Ranks:
    """Where this process stands, from the command line and the environment (cheap: no collective yet)."""
    if os.environ.get(WORKER_ENV) == "1":
        return Ranks(int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]),
                     worker=True)
    world = _devices_count(devices) * max(1, int(num_nodes))
    if world <= 1:
        return Ranks()
    env = _cluster_environment()
    if env is not None:
        return Ranks(env.world_size(), env.global_rank(), env.local_rank())
    if str(strategy).split("_")[0] not in ("ddp", "auto", "fsdp", "deepspeed"):
        return Ranks()  # a single-process strategy: Lightning will say what it thinks of --devices
    node_rank = int(os.environ.get("NODE_RANK", "0"))
    local = _devices_count(devices)
    return Ranks(world, node_rank * local, 0, launcher=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Launcher:
    """Starts local ranks 1..devices-1 of this node as ``python -m mcit_bench.worker FILE``; watches them.

    ``FILE`` holds the run's configuration as JSON; ``resume_hint`` ends the message of a dead rank (how to
    continue the run: a command a user can type)."""

    def __init__(self, ranks: Ranks, devices: int, config: dict[str, Any], resume_hint: str) -> None:
        self.ranks, self.devices, self.config, self.resume_hint = ranks, devices, dict(config), resume_hint
        self.children: list[subprocess.Popen] = []
        self._stopping = False
        self._config_file: str | None = None

    def start(self) -> None:
        import json
        import tempfile

        node_rank = int(os.environ.get("NODE_RANK", "0"))
        env = {"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
               "MASTER_PORT": os.environ.get("MASTER_PORT") or str(_free_port()),
               "WORLD_SIZE": str(self.ranks.world_size), "NODE_RANK": str(node_rank),
               "LOCAL_WORLD_SIZE": str(self.devices)}
        fd, self._config_file = tempfile.mkstemp(prefix="mcit-bench-run-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.config, handle)
        os.environ.update(env)  # rank 0 (this process) reads the same variables, as Lightning does
        os.environ.update({"RANK": str(self.ranks.rank), "LOCAL_RANK": "0"})
        for local in range(1, self.devices):
            child_env = {**os.environ, **env, "PYTHONWARNINGS": "ignore", "RANK": str(node_rank * self.devices + local),
                         "LOCAL_RANK": str(local), WORKER_ENV: "1"}
            self.children.append(subprocess.Popen([sys.executable, "-m", "mcit_bench.worker", self._config_file],
                                                  env=child_env, stdout=subprocess.DEVNULL))
        threading.Thread(target=self._watch, daemon=True).start()

    def failure(self, wait: float = 0.0) -> str | None:
        """What to say of a worker that stopped with an error (waiting up to ``wait`` s for one), else None."""
        deadline = time.time() + wait
        while True:
            for local, child in enumerate(self.children, start=1):
                code = child.poll()
                if code is not None and code != 0:
                    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                    return (f"rank {self.ranks.rank + local} (pid {child.pid}) stopped with {how}; the run stops "
                            f"here. Every completed cell is on disk: {self.resume_hint}.")
            if time.time() >= deadline:
                return None
            time.sleep(0.1)

    def _watch(self) -> None:
        # rank 0 may sit in a collective that would wait for the dead rank for a long time: stop from here.
        # The calling thread is given WATCH_GRACE_S to notice the failure itself (a collective that raises),
        # so that a caller running several runs (a sweep) can report this one and go on.
        while not self._stopping:
            message = self.failure()
            if message is not None:
                deadline = time.time() + WATCH_GRACE_S
                while not self._stopping and time.time() < deadline:
                    time.sleep(0.1)
                if not self._stopping:
                    print(f"mcit-bench: error: {message}", file=sys.stderr, flush=True)
                    self.stop()
                    os._exit(1)
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self._stopping = True
        for child in self.children:
            if child.poll() is None:
                child.kill()
        for child in self.children:  # reap them: a long-lived caller (a sweep) keeps no zombie ranks
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._forget_config()

    def wait(self) -> int:
        """Wait for the workers after rank 0 finished its share; the first non-zero exit code, else 0."""
        codes = [child.wait() for child in self.children]
        self._stopping = True
        self._forget_config()
        return next((c for c in codes if c != 0), 0)

    def _forget_config(self) -> None:
        if self._config_file is not None:
            try:
                os.unlink(self._config_file)
            except OSError:
                pass
            self._config_file = None


WATCH_GRACE_S = 10.0


def launch(ranks: Ranks, config: "RunConfig", resume_hint: str) -> Launcher:
    """Start this node's worker ranks (1..devices-1) of the run ``config`` (a ``RunConfig``) and return their
    launcher; the calling process is rank 0 (``ranks.launcher``). The workers read the configuration from a
    file, never from a rebuilt command line."""
    launcher = Launcher(ranks, _devices_count(config.devices), config.to_dict(), resume_hint)
    launcher.start()
    return launcher


def _watch_parent() -> None:
    """A worker whose launcher died (kill -9) must not wait forever in a collective."""
    parent = os.getppid()

    def poll() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=poll, daemon=True).start()


def init_process_group(ranks: Ranks, accelerator: str) -> None:
    """Join the process group (gloo on CPU, nccl on GPUs) before any work, so that evaluation and
    statistics can reduce; Lightning's ``Trainer.fit`` then finds it and creates none."""
    import torch
    import torch.distributed as dist

    if ranks.world_size <= 1 or dist.is_initialized():
        return
    if ranks.worker:
        _watch_parent()
    gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(ranks.local_rank)
    env = _cluster_environment()
    if env is not None:  # SLURM / torchrun: the address as Lightning would resolve it
        os.environ.setdefault("MASTER_ADDR", env.main_address)
        os.environ.setdefault("MASTER_PORT", str(env.main_port))
    dist.init_process_group("nccl" if gpu else "gloo", rank=ranks.rank, world_size=ranks.world_size)
    if not gpu and "OMP_NUM_THREADS" not in os.environ:  # the ranks of a machine share its cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) or ranks.world_size
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def all_reduce(tensor: Any) -> Any:
    """Sum of ``tensor`` over all ranks (a new tensor on the input's device and dtype; identity on one)."""
    import torch
    import torch.distributed as dist

    if not active():
        return tensor
    work = tensor.detach().clone()
    if dist.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(work)
    return work.to(tensor.device)


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` on one process."""
    import torch.distributed as dist

    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    import torch.distributed as dist

    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard(items: Sequence[Any]) -> list[Any]:
    """This rank's contiguous share of ``items`` (sizes differ by at most one; all of it on one process)."""
    n, world, me = len(items), world_size(), rank()
    start, stop = me * n // world, (me + 1) * n // world
    return list(items[start:stop])


def state_checksum(tensors: dict[str, Any]) -> list[float]:
    """Cheap fingerprint of a state dict: per tensor, the float64 sum and the sum of squares (two numbers
    whatever its size, so that even a 7B merge state is checked in seconds)."""
    import torch

    out: list[float] = []
    for key in sorted(tensors):
        t = tensors[key].detach().double()
        out += [float(t.sum()), float((t * t).sum())]
    return out


def check_same_state(tensors: dict[str, Any], what: str) -> None:
    """Raise when the state differs between ranks (it must be bitwise equal after reductions)."""
    sums = all_gather(state_checksum(tensors))
    bad = [r for r, s in enumerate(sums) if s != sums[0]]
    if bad:
        raise RuntimeError(f"strategy state differs between ranks after {what} (ranks {bad} differ from rank 0): "
                           f"a statistic was not reduced across ranks")
