"""Lightning loggers for training losses: CSV in the run folder by default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError

LOGGERS = ("csv", "tensorboard", "wandb", "none")


def check_logger(name: str) -> None:
    if name not in LOGGERS:
        raise UserError(f"--logger {name!r}: expected one of {', '.join(LOGGERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError as exc:
                raise UserError("--logger tensorboard: install tensorboard first") from exc
    if name == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise UserError("--logger wandb: install wandb first") from exc


def make_logger(name: str, run_dir: Path, stage: int) -> Any:
    """One logger version per stage (``logs/stage<t>/metrics.csv`` for CSV)."""
    if name == "none":
        return False
    if name == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(run_dir), name="logs", version=f"stage{stage}")
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=f"stage{stage}")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(save_dir=str(run_dir), name=f"{run_dir.name}-stage{stage}")
