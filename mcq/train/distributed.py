"""Which process this is under torchrun, which device it trains on, and the collective steps of a run."""

from __future__ import annotations

import logging
import os
from typing import TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0: the process that exports, scores and writes the report."""
    return rank() == 0


def data_parallel_devices() -> int:
    """How many devices each take a per-device batch: torchrun's processes, or, without torchrun, every
    visible GPU (Trainer then wraps the model in DataParallel)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        log.warning(
            "%d GPUs visible without torchrun: Trainer uses DataParallel over all of them (slower than DDP). "
            "Prefer torchrun --nproc_per_node %d train.py ..., or CUDA_VISIBLE_DEVICES=0 for one GPU.",
            gpus,
            gpus,
        )
    return max(1, gpus)


def train_device() -> torch.device:
    """The device this process trains on: its local rank's GPU when there is one, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier() -> None:
    if _initialized():
        torch.distributed.barrier()


def from_main(obj: T) -> T:
    """Rank 0's copy of `obj` on every rank (only rank 0 exports and scores), else `obj` itself."""
    if not _initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def end_process_group() -> None:
    """Tear the process group down on every rank together; a rank that exits with it alive can abort in
    gloo's threads ("terminate called without an active exception") and fail the torchrun job."""
    if _initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
