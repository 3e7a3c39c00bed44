"""Process-group helpers for ``torchrun`` training, and the samplers of training and evaluation.

``torchrun --nproc-per-node N --no-python fbseg train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`setup_distributed` reads them, picks the device (``cuda:LOCAL_RANK`` or the
CPU) and joins the process group (NCCL on CUDA, gloo on the CPU). Without those variables it
returns a single-process context and touches nothing. Rank 0 alone logs and writes files.

Samplers:

- :class:`ResumableDistributedSampler`: ``DistributedSampler`` (shuffled per epoch from
  ``seed + epoch``, padded to a multiple of the world size, as usual for training) that can skip
  the batches a resumed run already took in the current epoch, and yields ``(epoch, index)`` so
  that the dataset's augmentation RNG sees the epoch even inside persistent DataLoader workers
  (which hold their own copy of the dataset, out of reach of ``set_epoch`` calls).
- :class:`ShardedEvalSampler`: ``indices[rank::world]``, no padding, so that summing the ranks'
  confusion matrices counts every evaluation pixel exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from feedbackseg.devices.launch import launch
from feedbackseg.errors import DeviceError

__all__ = [
    "DeviceError",
    "DistributedContext",
    "EpochIndexedDataset",
    "ResumableDistributedSampler",
    "ShardedEvalSampler",
    "all_reduce_count",
    "resolve_device",
    "setup_distributed",
    "world",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:k]"``.

    Raises:
        DeviceError: CUDA asked for but not available, or an unknown device name.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}") from None


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_count(count: int) -> int:
    """Sum an integer over the ranks (identity without a process group; a collective)."""
    if not (dist.is_available() and dist.is_initialized()):
        return count
    device = torch.device("cpu")
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    value = torch.tensor([count], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return int(value.item())


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank, world size and device.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this node (selects the CUDA device).
        device: the device this process trains on.
        initialized: whether this context initialised the process group (and must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_true(self, flag: bool) -> bool:
        """True when ``flag`` holds on every rank (a collective under DDP)."""
        if not self.distributed:
            return flag
        device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def close(self) -> None:
        """Leave the process group if this context joined it."""
        if self.initialized and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Read the torchrun environment, choose the device, join the process group.

    Args:
        device: "auto" (CUDA when available), "cpu" or "cuda".

    Returns:
        The context; ``initialized`` is True when this call created the process group.

    Raises:
        DeviceError: "cuda" asked for but not available (one line).
    """
    use_cuda = resolve_device(device).type == "cuda"
    world_size, local_rank = launch().world_size, launch().local_rank
    if use_cuda:
        if torch.cuda.device_count() > 1 or world_size > 1:
            torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
        chosen = torch.device("cuda", torch.cuda.current_device())
    else:
        chosen = torch.device("cpu")
    if world_size <= 1:
        return DistributedContext(0, 1, 0, chosen, False)
    initialized = False
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        initialized = True
    return DistributedContext(
        dist.get_rank(), dist.get_world_size(), local_rank, chosen, initialized
    )


class EpochIndexedDataset(Dataset):
    """A dataset with ``set_epoch(epoch)`` indexed by ``(epoch, index)`` pairs.

    The pair travels with the index through the sampler into the worker that loads it, so the
    per-sample augmentation RNG (seed, epoch, index) is right in persistent workers too.

    Args:
        dataset: e.g. :class:`feedbackseg.data.dataset.ShardDataset`.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if getattr(self.dataset, "epoch", epoch) != epoch:
            self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        return self.dataset[index]


class ResumableDistributedSampler(DistributedSampler):
    """:class:`DistributedSampler` yielding ``(epoch, index)`` that can start mid-epoch.

    Works without a process group (pass ``num_replicas`` and ``rank``). The order of an epoch
    depends only on (seed, epoch), so a resumed run that skips the first ``start`` indices of
    this rank sees exactly the batches that the uninterrupted run would have seen.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank in the current epoch."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside [0, {self.num_samples}]")
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start :]
        epoch = self.epoch
        return iter([(epoch, int(i)) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardedEvalSampler(Sampler[int]):
    """``range(n)[rank::world]``: every index on exactly one rank, none padded or repeated."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.indices = list(range(length))[rank::num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
