"""Devices, precision, seeding and torch.distributed set-up (torchrun / SLURM environments)."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from mmapps.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes.

    Attributes:
        device: torch device of this process.
        rank, world_size, local_rank: torch.distributed coordinates (0, 1, 0 when not distributed).
        autocast_dtype: bf16 under autocast, or None for fp32.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    autocast_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def _slurm_to_torchrun_env() -> None:
    """Under ``srun`` without torchrun, derive RANK / WORLD_SIZE / LOCAL_RANK from SLURM variables."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    os.environ.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in os.environ:
        nodelist = os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")
        os.environ["MASTER_ADDR"] = nodelist.split(",")[0].split("[")[0]


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and precision; join the process group when launched with several processes."""
    _slurm_to_torchrun_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        from mmapps.errors import ConfigError

        raise ConfigError("train.device=cuda: no CUDA device is available on this machine; use train.device=auto or cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if cfg.precision == "bf16" or (cfg.precision == "auto" and use_cuda and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    else:
        dtype = None
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank, autocast_dtype=dtype)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def maybe_no_sync(model: torch.nn.Module, skip_sync: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on accumulation steps."""
    if skip_sync and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield
