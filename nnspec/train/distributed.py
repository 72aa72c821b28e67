"""Training under the `deepspeed` runner: process group, engine, sharded checkpoints, clean exit.

The runner (`deepspeed --num_accelerators 2 --module nnspec.train SPEC ...`) starts one process
per rank with RANK / WORLD_SIZE set; `launched()` tells the loop to take this path. Everything
here is collective: every rank calls every function, in the same order.

The exit matters as much as the training: a rank that leaves without destroying its process group
aborts with "terminate called without an active exception", and ZeRO-3 engines must be deleted
and collected first (see shared/ENVIRONMENT.md), which `DeepSpeedBackend.close` does.
"""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import torch

from nnspec.lang.config import TrainSpec
from nnspec.train.checkpoint import (
    MARKER, atomic_save, atomic_write_json, capture_rng, complete_folders, manifest, restore_rng,
    tag
)
from nnspec.train.compiling import require_compiler
from nnspec.train.errors import TrainError
from nnspec.train.safeload import UnsafeCheckpoint, safe_load, verify_folder
from nnspec.train.optim import build_optimizer, plateau


def launched() -> bool:
    """True inside a process started by a distributed launcher (deepspeed, torchrun)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


# ---- the process group ---------------------------------------------------------------------------

def init_process_group() -> None:
    """Join the runner's process group (gloo on the CPU, nccl on GPUs)."""
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() == "cpu":
        _cpu_defaults()
    else:  # collectives before deepspeed.initialize (barrier, broadcast) need the rank's device
        accelerator.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=accelerator.communication_backend_name(),
                                   verbose=False)


def _cpu_defaults() -> None:
    import deepspeed
    # DeepSpeed's shared-memory all-reduce is a C++ op built on first use (60-85 s) and faults
    # on CPUs without AVX2/AVX-512; gloo needs no build. NNSPEC_DS_SHM=1 opts back in.
    if os.environ.get("NNSPEC_DS_SHM") != "1":
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if "OMP_NUM_THREADS" not in os.environ:  # ranks sharing a machine share its cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's value of `obj`, on every rank."""
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    """Leave the process group; after this the process may exit without aborting."""
    gc.collect()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ---- the engine ----------------------------------------------------------------------------------

class DeepSpeedBackend:
    """A model trained by a DeepSpeed engine: ZeRO 0-3, offload, bf16, accumulation, clipping."""

    def __init__(self, model: torch.nn.Module, train: TrainSpec, config: dict, mpu=None):
        """`config` is the emitted DeepSpeed config (nnspec.emit.deepspeed) for this world size.
        Optimizers the config cannot name are built here and handed to DeepSpeed, as the
        emitter's `client_optimizer` asks. `mpu`: DeepSpeed's model-parallel groups, when the
        data-parallel group is not the whole world (tensor_parallel.py)."""
        import deepspeed
        from nnspec.emit.deepspeed import client_optimizer

        self.rank, self.world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        self.data_rank, self.data_world = self.rank, self.world
        self.is_main = self.rank == 0
        self.config = config
        if train.compile:
            from deepspeed.accelerator import get_accelerator
            require_compiler(get_accelerator().device_name())
        # ZeRO-3 steps its partition in sub-groups of its own (the config's sub_group_size)
        params = (layer_groups(model) if config["zero_optimization"]["stage"] != 3 else
                  [p for p in model.parameters() if p.requires_grad])
        client = build_optimizer(train.optimizer, params) if client_optimizer(train) else None
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, optimizer=client, config=config, mpu=mpu)
        self.device = self.engine.device
        if train.compile:  # the engine compiles its module in place (compiling.py)
            self.engine.compile()
        self.half = (torch.bfloat16 if config.get("bf16", {}).get("enabled") else
                     torch.float16 if config.get("fp16", {}).get("enabled") else None)
        self.zero = config["zero_optimization"]["stage"]
        self.plateau = plateau(train, self.engine.optimizer)

    def lr(self) -> float:
        return float(self.engine.optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.engine.train(mode)

    def _inputs(self, inputs) -> list[torch.Tensor]:
        moved = [x.to(self.device) for x in inputs]
        if self.half is not None:
            moved = [x.to(self.half) if x.is_floating_point() else x for x in moved]
        return moved

    def forward(self, inputs, labels=None) -> torch.Tensor:
        out = self.engine(*self._inputs(inputs))
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    def train_step(self, micro: list, objective) -> float:
        total = 0.0
        for inputs, y in micro:
            loss = objective.loss(self.forward(inputs), y.to(self.device))
            self.engine.backward(loss)
            self.engine.step()
            total += loss.item()
        return total / len(micro)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device)
        torch.distributed.all_reduce(t)
        return t.cpu()

    # -- checkpoints: DeepSpeed's sharded folders, plus per-rank RNG and a completion marker --

    def save(self, folder: Path, step: int, state: dict, keep: int) -> None:
        name = tag(step)
        self.engine.save_checkpoint(str(folder), tag=name, save_latest=False)
        # what differs between ranks: random streams, and the loss summed since the last log row
        atomic_save({"rng": capture_rng(), "window_loss": state["window_loss"]},
                    folder / name / f"rank{self.rank}.pt")
        finish_save(folder / name, {"step": step, "state": state}, keep, self.is_main)

    def load(self, folder: Path) -> dict | None:
        import json
        choice = newest_checkpoint(folder, self.is_main)
        if choice is None:
            return None
        _verify_on_every_rank(folder / choice)
        path, _ = self.engine.load_checkpoint(str(folder), tag=choice,
                                              load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise TrainError(f"DeepSpeed could not load checkpoint {folder / choice}",
                             "start without --resume, or remove the damaged checkpoint")
        mine = safe_load(folder / choice / f"rank{self.rank}.pt")
        restore_rng(mine["rng"])
        state = json.loads((folder / choice / MARKER).read_text())["state"]
        return dict(state, window_loss=mine["window_loss"])

    def state_dict(self) -> dict[str, torch.Tensor] | None:
        """The full fp32 weights on rank 0 (gathered from every rank under ZeRO-3), else None."""
        import deepspeed
        module = self.engine.module
        if self.zero == 3:
            # wait for the layers DeepSpeed is prefetching for the next forward and release
            # them: GatheredParameters cannot partition a parameter still in flight
            self.engine.empty_partition_cache()
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                sd = _cpu_float(module.state_dict()) if self.is_main else None
            return sd
        return _cpu_float(module.state_dict()) if self.is_main else None

    def close(self) -> None:
        """Drop the engine and optimizer, collect them, and leave the process group."""
        self.engine = self.optimizer = self.scheduler = self.plateau = None
        shutdown()


def finish_save(path: Path, marker: dict, keep: int, is_main: bool) -> None:
    """Once every rank has written its files into the checkpoint folder `path`: rank 0 writes
    the marker, with the sizes of the files (written last: a folder without it is a save that
    was cut short, and the sizes show a file torn later; checkpoint.is_complete), and drops all
    but the newest `keep` checkpoints."""
    barrier()
    if is_main:
        atomic_write_json(path / MARKER, {**marker, "files": manifest(path)})
        for old in complete_folders(path.parent)[keep:]:
            _remove_tree(old)
    barrier()


def newest_checkpoint(folder: Path, is_main: bool) -> str | None:
    """The name of the newest complete checkpoint in `folder` as rank 0 sees it, on every rank;
    None when there is none."""
    choice = None
    if is_main:
        complete = complete_folders(folder)
        choice = complete[0].name if complete else None
    return broadcast(choice)


def layer_groups(model: torch.nn.Module) -> list[dict]:
    """The trainable parameters as optimizer groups of at most one layer (the most parameters
    one module holds itself), consecutive in module order, all with the same settings.

    Where DeepSpeed keeps fp32 master weights beside 16-bit ones in flat buffers (BF16_Optimizer
    in a bf16 pipeline, ZeRO-1/2; ZeRO-3 has sub_group_size instead) it flattens each group
    into one fp32 tensor and steps it whole: with the model in one group, the optimizer's
    temporaries (two of Adam's denominator at once) are the size of the model or of the stage;
    with groups of a layer, of a layer."""
    seen: set[int] = set()
    layers = []
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:  # a ZeRO-3 parameter's numel is its shard's: ds_numel is the whole
            layers.append((own, sum(getattr(p, "ds_numel", p.numel()) for p in own)))
    limit = max((n for _, n in layers), default=0)
    groups: list[list] = []
    size = 0
    for own, n in layers:
        if not groups or size + n > limit:
            groups.append([])
            size = 0
        groups[-1] += own
        size += n
    return [{"params": g} for g in groups]


def _verify_on_every_rank(folder: Path) -> None:
    """Every rank checks every file of the checkpoint with the weights-only unpickler
    (safeload.py) before DeepSpeed's load_checkpoint, which unpickles, opens any of them; the
    ranks then raise the first refusal together, so none is left waiting in the load's
    collectives. A file that does not load at all (torn after the marker was checked) is
    refused too: DeepSpeed only ever opens files the check has read."""
    try:
        verify_folder(folder)
        mine = None
    except UnsafeCheckpoint as err:
        mine = ("unsafe", err.message, err.hint)
    except Exception as err:  # noqa: BLE001 - torn, or not a torch file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        mine = ("damaged", f"checkpoint {folder} is damaged ({first})",
                "start without --resume, or remove the damaged checkpoint")
    refusals = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(refusals, mine)
    first = next((r for r in refusals if r is not None), None)
    if first is not None:
        kind, message, hint = first
        raise (UnsafeCheckpoint if kind == "unsafe" else TrainError)(message, hint)


def _cpu_float(sd: dict) -> dict[str, torch.Tensor]:
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
            for k, v in sd.items()}


def _remove_tree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)

