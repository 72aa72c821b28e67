"""Validate an emitted config with DeepSpeed's own DeepSpeedConfig, for a given world size.

DeepSpeedConfig takes its world size from deepspeed.comm (1 when no process group exists) or,
when given an mpu, from mpu.get_data_parallel_world_size() (what deepspeed.initialize does for a
PipelineModule, passing its grid). So: patch deepspeed.comm.get_rank/get_world_size for plain
data parallelism, and pass a grid-like mpu for pipelines, exactly as a real run would.
"""
from __future__ import annotations

import copy
import inspect
from unittest import mock

import torch

deepspeed = __import__("pytest").importorskip("deepspeed")
from deepspeed.runtime import config as ds_config  # noqa: E402
from deepspeed.runtime import lr_schedules  # noqa: E402


class Grid:
    """The part of PipelineModule's grid (PipelineParallelGrid) DeepSpeedConfig asks."""

    def __init__(self, data_parallel: int):
        self.data_parallel = data_parallel

    def get_data_parallel_world_size(self) -> int:
        return self.data_parallel


def deepspeed_config(cfg: dict, world_size: int, pipeline_stages: int = 1):
    """DeepSpeedConfig(cfg) as rank 0 of `world_size` processes; raises what DeepSpeed raises."""
    mpu = Grid(world_size // pipeline_stages) if pipeline_stages > 1 else None
    with mock.patch.object(ds_config.dist, "get_rank", return_value=0), \
            mock.patch.object(ds_config.dist, "get_world_size", return_value=world_size):
        return ds_config.DeepSpeedConfig(copy.deepcopy(cfg), mpu=mpu)


def optimizer_class(cfg: dict):
    """The torch class deepspeed.initialize builds from cfg["optimizer"] (engine.py
    _configure_basic_optimizer), and the arguments it passes."""
    block = cfg["optimizer"]
    params = dict(block["params"])
    name = block["type"].lower()
    offload = cfg.get("zero_optimization", {}).get("offload_optimizer", {}).get("device")
    if name in ("adam", "adamw"):
        assert params.pop("torch_adam") is True
        w_mode = params.pop("adam_w_mode", True)
        return (torch.optim.AdamW if name == "adamw" or w_mode else torch.optim.Adam), params
    if name == "adagrad" and offload in ("cpu", "nvme"):
        from deepspeed.ops.adagrad import DeepSpeedCPUAdagrad
        return DeepSpeedCPUAdagrad, params
    if name == "adagrad":
        return torch.optim.Adagrad, params
    return getattr(torch.optim, block["type"]), params


def build_optimizer(cfg: dict, client: tuple[str, dict] | None = None):
    """A real optimizer on one dummy parameter, as the config (or the client) would build it."""
    p = [torch.nn.Parameter(torch.zeros(2))]
    if "optimizer" not in cfg:
        name, kwargs = client
        return getattr(torch.optim, name)(p, **kwargs)
    cls, params = optimizer_class(cfg)
    if cls.__name__ == "DeepSpeedCPUAdagrad":  # a C++ op: check the arguments, build nothing
        inspect.signature(cls).bind(p, **params)
        return torch.optim.Adagrad(p, **params)
    return cls(p, **params)


def build_scheduler(cfg: dict, optimizer):
    """The scheduler engine._scheduler_from_config builds, on `optimizer`."""
    block = cfg["scheduler"]
    return getattr(lr_schedules, block["type"])(optimizer, **block["params"])
