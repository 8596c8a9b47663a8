"""Data-parallel training across processes (torchrun): one run folder, rank 0 writes.

    torchrun --nproc_per_node=2 -m dlexp trainer.batch_size=128      # 2 processes, 64 each
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 -m dlexp

`trainer.batch_size` is the global batch: each of the N processes takes batch_size / N samples
of the same (seed, epoch) permutation, so N processes step exactly as one process would on the
whole batch (up to floating-point summation order).
"""

from __future__ import annotations

import os
from pathlib import Path

from dlexp.errors import DlexpError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Only rank 0 writes run folders, logs and checkpoints."""
    return rank() == 0


def init(device_name: str) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA) once per process."""
    import torch
    import torch.distributed as dist

    if world_size() <= 1 or dist.is_initialized():
        return
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo")


def shared_run_dir(run_dir: Path, device_name: str) -> Path:
    """Rank 0's run folder, told to every rank (the others were given a scratch folder)."""
    import torch.distributed as dist

    init(device_name)
    box = [str(run_dir)]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def seed_rank(seed: int) -> None:
    """Each process its own stream for dropout; rank 0 keeps the one a single process has.
    Called after the model is built: DDP gives every rank rank 0's initial weights anyway."""
    if world_size() > 1 and rank() > 0:
        import torch

        torch.manual_seed(seed + 1_000_003 * rank())


def gather_objects(obj: object) -> list[object]:
    """`obj` from every rank, in rank order (a collective: every rank must call it)."""
    if world_size() <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def device_for_rank(device_name: str) -> str:
    """Each process of a node takes its own GPU; CPU processes share the CPU."""
    if world_size() > 1 and device_name in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if local_rank() >= count:
                raise DlexpError(
                    f"process {local_rank()} of this node has no GPU of its own: the node has "
                    f"{count}. Start torchrun with --nproc_per_node={count} or fewer, or set "
                    "trainer.device=cpu"
                )
            return f"cuda:{local_rank()}"
        return "cpu"
    return device_name


def local_batch(global_batch: int) -> int:
    n = world_size()
    if global_batch % n:
        raise DlexpError(
            f"trainer.batch_size={global_batch} is the global batch and must divide evenly "
            f"over {n} processes; use a multiple of {n}"
        )
    return global_batch // n


def all_reduce_sum(tensor) -> None:  # noqa: ANN001 - a torch.Tensor, imported lazily
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)


def cleanup() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
