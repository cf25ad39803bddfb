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
        return _atomic_csv_logger()(save_dir=str(run_dir), name="logs", version=f"stage{stage}")
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=f"stage{stage}")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(save_dir=str(run_dir), name=f"{run_dir.name}-stage{stage}")


def _atomic_csv_logger() -> type:
    """Lightning's CSVLogger, but ``metrics.csv`` is rewritten atomically at each flush instead of appended
    to: a job killed mid-write leaves the previous complete file, never a torn last row."""
    import csv
    import io

    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    from .rundir.atomic import atomic_write_text

    class AtomicWriter(ExperimentWriter):
        def __init__(self, log_dir: str) -> None:
            super().__init__(log_dir=log_dir)
            self.rows: list[dict[str, Any]] = []

        def save(self) -> None:
            if not self.metrics:
                return
            self._record_new_keys()
            self.rows.extend(self.metrics)
            self.metrics = []
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=self.metrics_keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write_text(self.metrics_file_path, buffer.getvalue())

    class AtomicCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self) -> AtomicWriter:
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = AtomicWriter(log_dir=self.log_dir)
            return self._experiment

    return AtomicCSVLogger
