"""Multi-process data parallel training with PyTorch's own machinery (torch.distributed + DDP).

``torchrun --nproc_per_node=N -m charrnn train ...`` starts N processes with RANK, WORLD_SIZE
and LOCAL_RANK set; each one calls :func:`setup`. NCCL is used on GPUs, gloo on CPUs. The global
batch of ``batch_size`` streams is split across ranks (rank r trains rows r*B/W ... (r+1)*B/W-1
of the same (B, L) stream matrix), so a run of W processes follows the same data as a single
process with the same batch size. Rank 0 alone writes checkpoints, metrics and progress.

No pickle crosses the wire: strings are exchanged as byte tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import CharRNNError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_env() -> Dist:
    """The process's place in a torchrun job (a single process when not under torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise CharRNNError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    return Dist(rank, world, local) if world > 1 else SINGLE


def setup(d: Dist, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (cuda:LOCAL_RANK on GPUs)."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=d.rank, world_size=d.world_size)
    return device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_text(d: Dist, text: str | None, device: torch.device) -> str:
    """Rank 0's string on every rank."""
    if not d.enabled:
        assert text is not None
        return text
    data = (text or "").encode("utf-8") if d.is_main else b""
    size = torch.tensor([len(data)], dtype=torch.long, device=device)
    dist.broadcast(size, 0)
    if int(size.item()) == 0:  # every rank knows: nothing more to send (torch.frombuffer
        return ""  # refuses an empty buffer)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if d.is_main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode("utf-8")


def agree(d: Dist, values: list[float], device: torch.device) -> list[float]:
    """The element-wise maximum of ``values`` over all ranks (stop flags, schedule progress)."""
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def mean(d: Dist, value: float, device: torch.device) -> float:
    """Mean of a scalar over all ranks."""
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / d.world_size


def gather_rows(d: Dist, t: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate every rank's slice of ``t`` along ``dim`` (rank order)."""
    if not d.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(d.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


def rows(d: Dist, total: int) -> slice:
    """This rank's share of ``total`` streams."""
    if total % d.world_size:
        raise CharRNNError(
            f"--batch-size {total} cannot be split evenly over {d.world_size} processes"
        )
    per = total // d.world_size
    return slice(d.rank * per, (d.rank + 1) * per)
