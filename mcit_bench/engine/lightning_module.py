"""The LightningModule that learns one task (Renate-style: apart from the task-sequence loop).

It delegates everything method-specific to the Strategy: the named losses of ``train_step`` are
summed into the back-propagated loss and logged one by one; ``before_optimizer_step`` runs between
backward and the optimiser step (gradient projection), ``after_optimizer_step`` right after it.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from ..strategy import Strategy, fused_adamw  # noqa: F401 (fused_adamw: where it was first defined)


def rank_normalised(losses: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The losses as this rank back-propagates them so that DDP's gradient average is the single-process
    gradient of the global batch.

    ``lm`` (a mean over this rank's label tokens) is rescaled to sum-over-my-tokens / global-token-count x
    world size: DDP divides the summed gradients by the world size, leaving the mean over ALL label tokens
    (ranks hold different numbers of tokens). The other losses are per-sample means or data-independent
    terms: averaged over ranks they are the global values when the batch splits evenly. Identity on one
    process.
    """
    from .. import distributed

    if not distributed.active() or "lm" not in losses or batch.get("labels") is None:
        return losses
    mine = (batch["labels"][:, 1:] != -100).sum().to(torch.float64)
    total = distributed.all_reduce(mine)
    scale = (mine * distributed.world_size() / total.clamp(min=1)).to(losses["lm"].dtype)
    return {**losses, "lm": losses["lm"] * scale}


def _vocab_size(strategy: Strategy) -> int | None:
    """Rows of the output projection (the uniform loss is ln of it); None when the backbone has none."""
    try:
        return int(strategy.backbone.model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        return None


class ContinualModule(L.LightningModule):
    def __init__(self, strategy: Strategy, hparams: dict[str, Any], total_steps: int, stage: int = 0,
                 task: str = "") -> None:
        super().__init__()
        self.strategy = strategy
        self.run_hparams = hparams
        self.total_steps = total_steps
        self.stage, self.task = stage, task  # named in the divergence error
        from .divergence import LossHealth

        self.health = LossHealth(_vocab_size(strategy), hparams)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.strategy.train_step(batch)
        if not losses:
            raise RuntimeError(f"{self.strategy.name}.train_step returned no loss")
        total = torch.stack([value for value in losses.values()]).sum()
        if not torch.isfinite(total.detach()).item():  # stop at once: a diverged model must not become a result
            from .divergence import check_losses

            check_losses({name: float(value.detach()) for name, value in losses.items()} | {"total": float(total.detach())},
                         self.stage, self.task, self.global_step + 1, self.total_steps, self.run_hparams)
        if "lm" in losses:  # a finite loss that says the model is destroyed stops the run too
            self.health.check(float(losses["lm"].detach()), self.stage, self.task, self.global_step + 1,
                              self.total_steps, self.run_hparams)
        if self._logger_writes_this_step():
            batch_size = len(batch["input_ids"])
            for name, value in losses.items():
                self.log(f"train/{name}", value.detach(), batch_size=batch_size)
            self.log("train/loss", total.detach(), batch_size=batch_size)
        return torch.stack(list(rank_normalised(losses, batch).values())).sum()

    def on_train_start(self) -> None:
        from .interrupt import reclaim

        reclaim()  # Lightning's own SIGTERM handler would hang a multi-rank run (interrupt.reclaim)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        from .interrupt import check

        check()  # a safe point: SIGINT / SIGTERM stop here, before the step changes anything

    def _logger_writes_this_step(self) -> bool:
        """Whether the logger writes this step's values (Lightning's ``log_every_n_steps`` rule). ``self.log``
        of a step-level value costs ~2.5 ms on CPU (Lightning moves its whole result collection each call),
        5% of a built-in step, and values of the steps in between are overwritten unwritten anyway."""
        trainer = self._trainer
        if trainer is None or not trainer.loggers:
            return False
        every = trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu":  # the collator builds CPU tensors: nothing to move, and Lightning's generic
            return batch          # walk over the batch costs ~1 ms a step
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.strategy.before_optimizer_step()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.strategy.after_optimizer_step()

    def configure_optimizers(self) -> Any:
        hp = self.run_hparams
        groups = self.strategy.param_groups(float(hp["lr"]), float(hp["weight_decay"]))
        optimizer = self.strategy.configure_optimizer(groups)
        warmup = max(1, math.ceil(float(hp["warmup_ratio"]) * self.total_steps))
        total = max(self.total_steps, warmup + 1)

        def lr_lambda(step: int) -> float:  # linear warmup then cosine decay to 0 (LLaVA's schedule)
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
