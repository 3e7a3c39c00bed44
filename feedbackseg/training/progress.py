"""What a training run reports: messages (rank 0), the metrics log, TensorBoard and the running
loss window (used by :mod:`feedbackseg.training.train`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from feedbackseg.config import TrainConfig
from feedbackseg.devices.distributed import DistributedContext
from feedbackseg.runs.rundir import TENSORBOARD_DIR, append_metrics

__all__ = ["Progress"]

#: Keys of the train records drawn in TensorBoard.
_SCALARS = ("loss_seg", "loss_l1", "lr_s", "samples_per_s")


class Progress:
    """Messages (rank 0), the metrics log, TensorBoard and the running loss window."""

    def __init__(
        self, config: TrainConfig, ctx: DistributedContext, log: Any, on_step: Any = None
    ) -> None:
        self.run = Path(config.out)
        self.is_main = ctx.is_main
        self.world_size = ctx.world_size
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.on_step = on_step
        self.writer: Any = None
        self.reset()

    def open_tensorboard(self) -> None:
        """A SummaryWriter on rank 0 if torch.utils.tensorboard imports, else none (silently)."""
        if not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # noqa: BLE001 - tensorboard is optional; any import failure skips it
            return
        self.writer = SummaryWriter(str(self.run / TENSORBOARD_DIR))

    def say(self, message: str) -> None:
        if self.is_main:
            self.log(message)

    def step(self, step: int, total: int) -> None:
        """Report ``step`` of ``total`` steps to the ``on_step`` callback (rank 0), if any."""
        if self.is_main and self.on_step is not None:
            self.on_step(step, total)

    def reset(self) -> None:
        self.sums = {"loss_seg": 0.0, "loss_l1": 0.0}
        self.n = 0
        self.start, self.samples = time.perf_counter(), 0

    def add(self, result: dict[str, float], batch: int) -> None:
        self.sums["loss_seg"] += result["loss_seg"]
        self.sums["loss_l1"] += result["loss_l1"]
        self.n += 1
        self.samples += batch * self.world_size

    def log_train(self, step: int, epoch: int, total: int, lrs: tuple[float, Any]) -> None:
        """Write the window's train record (rank 0) and start a new window."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        record = {
            "kind": "train",
            "step": step,
            "epoch": epoch,
            "loss_seg": self.sums["loss_seg"] / self.n,
            "loss_l1": self.sums["loss_l1"] / self.n,
            "lr_s": lrs[0],
            "lr_r": lrs[1],
            "samples_per_s": self.samples / elapsed,
        }
        if self.is_main:
            append_metrics(self.run, record)
            if self.writer is not None:
                for key in _SCALARS:
                    if record[key] is not None:
                        self.writer.add_scalar(f"train/{key}", record[key], step)
            lr = "lr_s" if record["lr_s"] is not None else "lr_r"  # the restore mode has no S
            self.say(
                f"step {step}/{total} epoch {epoch} loss_seg {record['loss_seg']:.4f} "
                f"loss_l1 {record['loss_l1']:.4f} {lr} {record[lr]:.3g} "
                f"{record['samples_per_s']:.1f} samples/s"
            )
        self.reset()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
