"""One-process training: the CPU, or the one GPU if there is one.

The backend interface the loop drives (DeepSpeedBackend in distributed.py and DDPBackend in
ddp.py are the others):
`train_step`, `forward`, `all_reduce`, `save` / `load`, `state_dict`, `lr`, `close`, and the
attributes `rank`, `world`, `is_main`, `plateau`, `updating`.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from nnspec.lang.config import TrainSpec
from nnspec.train.checkpoint import LocalCheckpoints, capture_rng, restore_rng
from nnspec.train.compiling import compile_in_place
from nnspec.train.errors import TrainError
from nnspec.train.optim import build_optimizer, deepspeed_scheduler, plateau

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


class LocalBackend:
    """torch optimizer, the emitted schedule's DeepSpeed scheduler, autocast for bf16/fp16, gradient
    accumulation over micro-batches and clipping, as DeepSpeed would do them."""

    rank, world, is_main = 0, 1, True
    data_rank, data_world = 0, 1

    def __init__(self, model: torch.nn.Module, train: TrainSpec, precision: str,
                 schedule_block: dict | None):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.half = HALF.get(precision)
        if self.half is torch.float16 and self.device.type != "cuda":
            raise TrainError("fp16 training needs a GPU", "use precision = bf16 on the CPU")
        self.model = model.to(self.device)
        if train.compile:  # in place: the state_dict keys stay the model's (compiling.py)
            compile_in_place(self.model, self.device.type)
        self.optimizer = build_optimizer(train.optimizer,
                                         [p for p in model.parameters() if p.requires_grad])
        # DeepSpeed's scheduler class, stepped after each optimizer step as its engine does
        self.scheduler = deepspeed_scheduler(schedule_block, self.optimizer)
        self.plateau = plateau(train, self.optimizer)
        self.clip = train.clip_grad_norm
        self.scaler = torch.amp.GradScaler("cuda") if self.half is torch.float16 else None
        self.updating = False  # True while the optimizer changes the weights
        self.updates = 0        # optimizer updates done by this process
        self.last_loss = 0.0

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def forward(self, inputs, labels=None) -> torch.Tensor:
        return self._run(self.model, inputs)

    def _run(self, module: torch.nn.Module, inputs) -> torch.Tensor:
        cast = (torch.autocast(self.device.type, dtype=self.half) if self.half is not None
                else nullcontext())
        with cast:
            out = module(*[x.to(self.device) for x in inputs])
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    # what a data-parallel subclass (nnspec.train.ddp) changes: the module that trains, the
    # gradient sync skipped while micro-batches accumulate, and work after each update
    def _train_forward(self, inputs) -> torch.Tensor:
        return self.forward(inputs)

    def _accumulating(self, more: bool):
        return nullcontext()

    def _after_update(self) -> None:
        pass

    def train_step(self, micro: list, objective) -> float:
        """One optimizer step over `micro` batches (gradients averaged); the mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, (inputs, y) in enumerate(micro):
            with self._accumulating(i < len(micro) - 1):
                loss = objective.loss(self._train_forward(inputs), y.to(self.device))
                scaled = loss / len(micro)
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            total += loss.item()
        self.last_loss = total / len(micro)
        self.updating = True
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self._after_update()
        self.updates += 1
        self.updating = False
        return self.last_loss

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        return t.cpu()

    def save(self, folder: Path, step: int, state: dict, keep: int) -> None:
        payload = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                   "scaler": self.scaler.state_dict() if self.scaler else None,
                   "rng": capture_rng(), "state": state}
        LocalCheckpoints(folder, keep).save(step, payload)

    def load(self, folder: Path) -> dict | None:
        payload = LocalCheckpoints(folder, 1).load_latest()
        if payload is None:
            return None
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload["scheduler"] is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            if self.scaler is not None and payload.get("scaler"):
                self.scaler.load_state_dict(payload["scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise TrainError(f"the checkpoint in {folder} does not fit this model or optimizer "
                             f"({str(err).splitlines()[0]})", "resume with the settings it was "
                             "saved with, or start afresh") from None
        restore_rng(payload["rng"])
        return payload["state"]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def close(self) -> None:
        self.model = self.optimizer = self.scheduler = self.plateau = None
