"""mcit-bench: ``mcit_bench.run(RunConfig(...))`` runs one configuration (``api.py``); the CLI is ``cli.py``."""
from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "RunResult", "RunConfig"]


def __getattr__(name: str) -> Any:
    """Lazy: ``import mcit_bench`` (and ``mcit-bench --help``) imports neither torch nor the runner."""
    if name in ("run", "RunResult"):
        from . import api

        return getattr(api, name)
    if name == "RunConfig":
        from .config import RunConfig

        return RunConfig
    raise AttributeError(f"module 'mcit_bench' has no attribute {name!r}")
