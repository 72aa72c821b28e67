"""Engine ddp: plain data parallelism on torch's DistributedDataParallel under the deepspeed
runner, with torch's communication hooks (`parallel { engine = ddp  comm_hook = ... }`).

- comm_hook none: `allreduce_hook`, torch's Python twin of DDP's own all-reduce (so the counter
  sees it); fp16 / bf16: the compress hooks (gradients cast, all-reduced, cast back); powersgd:
  PowerSGD with error feedback and warm start, plain all-reduce for its first `warmup` steps.
- local_sgd = every(H, warmup=W): post-local SGD. The post_localSGD hook all-reduces gradients
  for W steps and then none; PeriodicModelAverager averages the parameters after every H-th
  update from step W on. Between averages the ranks' models differ, so evaluation and the final
  weights use their average (the ranks' own parameters are put back after an evaluation).

The rest is the one-process backend's (LocalBackend): optimizer, DeepSpeed's scheduler classes,
autocast, accumulation (DDP's no_sync on all but the last micro-batch), clipping. Checkpoints
(ddp_checkpoint.py) hold every rank's state, so runs resume exactly. What the hooks and the
averager all-reduce is counted (comm_count.py) and reported in final.json under "comm".
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from nnspec.lang.config import Call, ParallelSpec, TrainSpec
from nnspec.lang.config.ddp_checks import local_sgd_args, powersgd_args
from nnspec.train import ddp_checkpoint
from nnspec.train.checkpoint import capture_rng, restore_rng
from nnspec.train.comm_count import CommCounter, count_hook_collectives
from nnspec.train.distributed import shutdown
from nnspec.train.local import LocalBackend


def hook_text(call: Call) -> str:
    """`powersgd(rank=4, warmup=10)`, as the report names the setting."""
    inner = [repr(a) for a in call.args] + [f"{k}={v!r}" for k, v in call.kwargs.items()]
    return f"{call.name}({', '.join(inner)})" if inner else call.name


class DDPBackend(LocalBackend):
    """One rank of a DistributedDataParallel run (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, train: TrainSpec, parallel: ParallelSpec,
                 config: dict):
        super().__init__(model, train, parallel.precision, config.get("scheduler"))
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.data_rank, self.data_world = self.rank, self.world
        self.is_main = self.rank == 0
        cuda = self.device.type == "cuda"
        self.ddp = torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[torch.cuda.current_device()] if cuda else None,
            **self._one_bucket(parallel))
        self.comm = CommCounter()
        self._stop_counting = count_hook_collectives(self.comm)
        self.setting = (f"local_sgd {hook_text(parallel.local_sgd)}" if parallel.local_sgd
                        else f"comm_hook {hook_text(parallel.comm_hook)}")
        self.powersgd = self.post_local = self.averager = None
        self.warmup = self._register(parallel, train.seed)
        self._own: list[torch.Tensor] | None = None  # this rank's parameters while evaluating
        self.step_times: deque[float] = deque(maxlen=1000)  # this process's latest steps
        self._unsettled = False  # resumed: DDP's buckets are not yet those the run saved with

    def _one_bucket(self, parallel: ParallelSpec) -> dict:
        """DDP's arguments for PowerSGD over gloo: every gradient in one bucket.

        torch's PowerSGD hook all-reduces Q from the callback of P's all-reduce; gloo runs such
        callbacks on its own threads, so with two buckets the ranks can issue one bucket's Q
        and the next bucket's P in different orders, and gloo aborts ("Received data size
        doesn't match expected size"; seen with a 3.2M-parameter MLP). With one bucket each
        step's collectives form one chain. NCCL keeps DDP's buckets."""
        if parallel.comm_hook.name != "powersgd" or dist.get_backend() != "gloo":
            return {}
        size = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return {"bucket_cap_mb": max(25, size // 2 ** 20 + 1)}

    def _register(self, parallel: ParallelSpec, seed: int) -> int:
        """Register the hook (and build the averager); returns the steps of warm-up."""
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        from torch.distributed.algorithms.ddp_comm_hooks import post_localSGD_hook as local
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

        if parallel.local_sgd is not None:
            from torch.distributed.algorithms.model_averaging.averagers import (
                PeriodicModelAverager)
            args = local_sgd_args(parallel.local_sgd)
            # no gradient all-reduce at all after the warm-up: the averager is the only sync
            self.post_local = local.PostLocalSGDState(None, None, args["warmup"],
                                                      post_local_gradient_allreduce=False)
            self.ddp.register_comm_hook(self.post_local, local.post_localSGD_hook)
            self.averager = PeriodicModelAverager(args["period"], warmup_steps=args["warmup"])
            return args["warmup"]
        hook = parallel.comm_hook
        if hook.name == "powersgd":
            args = powersgd_args(hook)
            self.powersgd = psgd.PowerSGDState(None, matrix_approximation_rank=args["rank"],
                                               start_powerSGD_iter=args["warmup"],
                                               random_seed=seed)
            self.ddp.register_comm_hook(self.powersgd, psgd.powerSGD_hook)
            return args["warmup"]
        chosen = {"fp16": default_hooks.fp16_compress_hook,
                  "bf16": default_hooks.bf16_compress_hook}.get(hook.name,
                                                                default_hooks.allreduce_hook)
        self.ddp.register_comm_hook(None, chosen)
        return 0

    # -- the steps --

    def _train_forward(self, inputs) -> torch.Tensor:
        return self._run(self.ddp, inputs)

    def _accumulating(self, more: bool):
        return self.ddp.no_sync() if more else nullcontext()

    def train_step(self, micro: list, objective) -> float:
        if self._unsettled:
            self._settle_buckets(micro[0], objective)
        self.comm.start_step()
        start = time.perf_counter()
        loss = super().train_step(micro, objective)
        self.step_times.append(time.perf_counter() - start)
        self.comm.end_step(steady=self.updates > self.warmup)
        return loss

    def _settle_buckets(self, batch, objective) -> None:
        """One forward and backward that leaves no trace, before a resumed run's first step.

        DDP reduces its first backward in one bucket of every gradient, then rebuilds its
        buckets in the order the gradients became ready; PowerSGD keeps its error feedback and
        warm-start matrices per bucket, laid out as the bucket is. A resumed run's first step
        would be a first backward again, with the saved state laid over another layout; after
        this pass DDP rebuilds the buckets the saving run had. The hooks run their warm-up
        all-reduce for it (nothing they keep changes); gradients, buffers, random streams and
        the counts are put back."""
        rng, counts = capture_rng(), self.comm.state_dict()
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        iters = [(s, s.iter) for s in (self.powersgd, self.post_local) if s is not None]
        for state, _ in iters:
            state.iter = 0
        inputs, y = batch
        objective.loss(self._train_forward(inputs), y.to(self.device)).backward()
        self.optimizer.zero_grad(set_to_none=True)
        for state, it in iters:
            state.iter = it
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(buffers[k])
        self.comm.load_state_dict(counts)
        restore_rng(rng)
        self._unsettled = False

    def _after_update(self) -> None:
        if self.averager is not None:
            self.averager.average_parameters(self.model.parameters())

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device)
        dist.all_reduce(t)
        return t.cpu()

    # -- the model the run means: the ranks' average under local SGD --

    def _averaged(self) -> list[torch.Tensor]:
        """The parameters averaged over the ranks, as the averager computes them (each divided
        by the world size, then summed); an evaluation's all-reduce, not counted."""
        params = [p.detach() for p in self.model.parameters()]
        flat = torch.cat([p.reshape(-1) for p in params]) / self.world
        dist.all_reduce(flat)
        return [t.view_as(p).to(p.dtype) for t, p in zip(flat.split([p.numel() for p in params]),
                                                          params)]

    def train(self, mode: bool = True) -> None:
        """Evaluation (mode False) sees the averaged model under local SGD; training its own."""
        if self.averager is not None and not mode and self._own is None:
            self._own = [p.detach().clone() for p in self.model.parameters()]
            with torch.no_grad():
                for p, avg in zip(self.model.parameters(), self._averaged()):
                    p.copy_(avg)
        elif self.averager is not None and mode and self._own is not None:
            with torch.no_grad():
                for p, own in zip(self.model.parameters(), self._own):
                    p.copy_(own)
            self._own = None
        super().train(mode)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights on every rank (collective): the ranks' average under local SGD."""
        sd = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.averager is not None:
            names = [n for n, _ in self.model.named_parameters()]
            sd.update({n: t.cpu().clone() for n, t in zip(names, self._averaged())})
        return sd

    def comm_report(self) -> dict:
        """What final.json says under "comm"."""
        return {"engine": "ddp", "setting": self.setting, "warmup_steps": self.warmup,
                "world_size": self.world, **self.comm.report(),
                # the median: steady on a shared machine, and past the first steps' set-up
                "seconds_per_step": statistics.median(self.step_times or [0.0])}

    # -- checkpoints: every rank's state in one folder (ddp_checkpoint.py) --

    def save(self, folder: Path, step: int, state: dict, keep: int) -> None:
        ddp_checkpoint.save(self, folder, step, state, keep)

    def load(self, folder: Path) -> dict | None:
        state = ddp_checkpoint.load(self, folder)
        self._unsettled = state is not None
        return state

    def close(self) -> None:
        self._stop_counting()
        self.ddp = self.model = self.optimizer = self.scheduler = self.plateau = None
        self.powersgd = self.post_local = self.averager = None
        shutdown()
