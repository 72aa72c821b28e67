"""The training loop, shared by one-process training and the DeepSpeed runner.

`run` checks every setting and loads the data first (so a mistake is a `TrainError` before any
work), then drives a backend step by step: `LocalBackend` (one process, CPU or one GPU) or
`DeepSpeedBackend` or `DDPBackend` (under the runner). Batches come from a plan fixed by the seed
(nnspec.train.batches); SIGINT / SIGTERM stop it after a step with a checkpoint
(nnspec.train.stop).
"""
from __future__ import annotations

import logging
import math
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nnspec.lang.config import (
    ParallelSpec, TrainSpec, check_parallel, resolve_layout, total_steps_for
)
from nnspec.ir import largest_layer
from nnspec.outputs import replace_file
from nnspec.train import distributed, pipeline_module as pipe, runs, tensor_parallel as tp
from nnspec.train.batches import BatchPlan, eval_batches, seed_everything
from nnspec.train.checkpoint import atomic_write_json, capture_rng, restore_rng
from nnspec.train.data import Data, Split, load_data
from nnspec.train.errors import TrainError
from nnspec.train.local import LocalBackend
from nnspec.train.metrics import MetricsLog, Objective, build_objective
from nnspec.train.stop import Stop, stop_signals

log = logging.getLogger("nnspec.train")
LOG_EVERY = 20        # optimizer steps between train rows in metrics.csv
AGREE_EVERY = 10      # steps between the ranks' checks for a stop signal


# ---- the loop ------------------------------------------------------------------------------------

@dataclass
class LoopState:
    """What the loop knows beyond the model and optimizer; saved in every checkpoint."""

    step: int = 0
    best: float = math.inf
    bad_evals: int = 0
    plateau: dict | None = None
    window_loss: float = 0.0     # this rank's loss summed since the last train row
    window_steps: int = 0
    last_eval: dict = field(default_factory=dict)
    last_eval_step: int = -1


class Trainer:
    """Drives a backend through a run: steps, evaluations, logs, checkpoints, the final result."""

    def __init__(self, backend, data: Data, objective: Objective, train: TrainSpec,
                 plan: BatchPlan, total: int, out_dir: Path, progress: bool, name: str):
        self.b, self.data, self.obj, self.train, self.plan = backend, data, objective, train, plan
        self.total, self.out = total, out_dir
        self.progress, self.name = progress, name
        self.ckpt_dir = out_dir / "checkpoints"
        self.metrics_log: MetricsLog | None = None
        self.bar = None
        self.hf_spec = None  # a spec with hf_config: finish also writes out/hf/
        self._before: tuple | None = None
        self.train_loss: float | None = None  # the latest train row, for the progress bar
        per_epoch = plan.steps_per_epoch if train.epochs or train.early_stopping else None
        self.eval_every = train.eval_every or per_epoch

    # -- evaluation --

    def evaluate(self) -> dict[str, float]:
        """Loss and metrics over the whole test split (each rank a share, summed over ranks)."""
        self.b.train(False)
        test: Split = self.data.test
        sums = torch.zeros(len(self.obj.names) + 1, dtype=torch.float64)
        with torch.no_grad():
            for idx, valid in eval_batches(len(test), self.b.data_world, self.b.data_rank):
                inputs, y = test.take(idx)
                out = self.b.forward(inputs, labels=y)  # None on a pipeline stage without them
                if valid and out is not None:
                    sums += self.obj.batch_sums(out[:valid], y[:valid].to(out.device)).cpu()
        self.b.train(True)
        return self.obj.summarize(self.b.all_reduce(sums))

    # -- the run --

    def open(self, state: LoopState) -> None:
        """Start the metrics files and the progress bar (rank 0), continuing a resumed run."""
        if self.b.is_main:
            self.metrics_log = MetricsLog(self.out, self.obj.names, state.step or None)
        if self.progress and self.b.is_main:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=state.step, desc=self.name, unit="step",
                            dynamic_ncols=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics_log is not None:
            self.metrics_log.close()
        self.bar = self.metrics_log = None

    def fit(self, state: LoopState, stop_at: int | None = None) -> str:
        """Train until the end, early stopping, `stop_at` or a stop signal; returns the status:
        completed, early_stopping, stopped (`stop_at`) or interrupted (a signal)."""
        with stop_signals() as stop:
            try:
                return self._steps(state, stop, stop_at)
            except KeyboardInterrupt:
                return self._interrupted(state)

    def _steps(self, state: LoopState, stop: Stop, stop_at: int | None) -> str:
        spe, order, order_epoch = self.plan.steps_per_epoch, None, -1
        self.b.train(True)
        while state.step < self.total:
            epoch = state.step // spe
            if epoch != order_epoch:
                order, order_epoch = self.plan.order(epoch), epoch
            if isinstance(self.b, LocalBackend):  # where a second Ctrl-C in the step rolls back to
                self._before = (capture_rng(), self.b.updates, asdict(state))
            micro = [self.data.train.take(i) for i in self.plan.micro_batches(state.step, order)]
            state.window_loss += self.b.train_step(micro, self.obj)
            state.window_steps += 1
            state.step += 1
            self._before = None
            early = self._after_step(state)
            stopping = self._stopping(state, stop, stop_at)
            every = self.train.checkpoint_every
            if (every and state.step % every == 0) or stopping:
                self._save(state)
            if early:
                return "early_stopping"
            if stopping:
                return "interrupted" if stop.requested else "stopped"
        return "completed"

    def _after_step(self, state: LoopState) -> bool:
        """The train row and evaluation due at this step; True to stop early."""
        if state.step % LOG_EVERY == 0 or state.step == self.total:
            self._log_train(state)
        early = bool(self.eval_every) and state.step % self.eval_every == 0 \
            and self._eval_and_log(state)
        if self.bar is not None:
            self.bar.update(1)
        return early

    def _stopping(self, state: LoopState, stop: Stop, stop_at: int | None) -> bool:
        """Whether to stop after this step. A signal reaches one rank or all at different times,
        so ranks agree (one all-reduce) every AGREE_EVERY steps; `stop_at` is the same on all."""
        if stop_at is not None and state.step >= stop_at:
            return True
        if self.b.world == 1:
            return stop.requested
        if state.step % AGREE_EVERY:
            return False
        flag = self.b.all_reduce(torch.tensor([float(stop.requested)], dtype=torch.float64))
        stop.requested = bool(flag[0] > 0)
        return stop.requested

    def _interrupted(self, state: LoopState) -> str:
        """A KeyboardInterrupt that got through (the same signal twice): save what is whole.

        One process knows where the step was: before the optimizer update it rolls back to the
        step's start (gradients dropped, RNG rewound); after it, it counts the step; during it,
        it keeps the last checkpoint. A rank of a group cannot agree with the others any more
        and just leaves.
        """
        if self.b.world > 1 or not isinstance(self.b, LocalBackend):
            raise KeyboardInterrupt
        if self.b.updating:
            log.warning("interrupted during an optimizer update: keeping the last checkpoint")
            return "interrupted"
        if self._before is not None:
            rng, updates, before = self._before
            for key, value in before.items():
                setattr(state, key, value)
            if self.b.updates == updates:
                restore_rng(rng)
            else:  # the update happened: finish the step's bookkeeping as the loop would have
                state.step += 1
                state.window_loss += self.b.last_loss
                state.window_steps += 1
                self._after_step(state)
        self._save(state)
        return "interrupted"

    def _eval_and_log(self, state: LoopState) -> bool:
        """Evaluate, log, step reduce_on_plateau; True when early stopping's patience ran out."""
        result = self.evaluate()
        state.last_eval, state.last_eval_step = result, state.step
        if self.metrics_log is not None:
            self.metrics_log.add(state.step, state.step / self.plan.steps_per_epoch, "eval",
                                 self.b.lr(), result)
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(state), refresh=False)
        if self.b.plateau is not None:
            self.b.plateau.step(result["loss"])
            state.plateau = self.b.plateau.state_dict()
        if result["loss"] < state.best:
            state.best, state.bad_evals = result["loss"], 0
        else:
            state.bad_evals += 1
        patience = self.train.early_stopping
        return patience is not None and state.bad_evals >= patience

    def _log_train(self, state: LoopState) -> None:
        """A train row: the mean loss over the steps since the last one, and over the ranks."""
        total = self.b.all_reduce(torch.tensor([state.window_loss], dtype=torch.float64))
        mean = float(total[0]) / self.b.world / max(state.window_steps, 1)
        state.window_loss, state.window_steps = 0.0, 0
        self.train_loss = mean
        if self.metrics_log is not None:
            self.metrics_log.add(state.step, state.step / self.plan.steps_per_epoch, "train",
                                 self.b.lr(), {"loss": mean})
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(state), refresh=False)

    def _postfix(self, state: LoopState) -> dict[str, str]:
        shown = {}
        if self.train_loss is not None:
            shown["loss"] = f"{self.train_loss:.4f}"
        for name in self.obj.names[1:2]:
            if name in state.last_eval:
                shown[name] = f"{state.last_eval[name]:.4f}"
        return shown

    def _save(self, state: LoopState) -> None:
        self.b.save(self.ckpt_dir, state.step, asdict(state), self.train.keep_checkpoints)

    def restore(self) -> LoopState | None:
        saved = self.b.load(self.ckpt_dir)
        if saved is None:
            return None
        state = LoopState(**saved)
        if self.b.plateau is not None and state.plateau:
            self.b.plateau.load_state_dict(state.plateau)
            # the lr it reduced to (a sharded optimizer's checkpoint may not carry it back)
            for group, lr in zip(self.b.plateau.optimizer.param_groups,
                                 self.b.plateau.get_last_lr()):
                group["lr"] = lr
        return state

    def finish(self, state: LoopState, status: str) -> dict[str, Any]:
        """Evaluate the final model (unless just done) and write final.json and the weights."""
        if state.last_eval_step == state.step and "loss" in state.last_eval:
            result = dict(state.last_eval)
        else:
            result = self.evaluate()
            if self.metrics_log is not None:
                self.metrics_log.add(state.step, state.step / self.plan.steps_per_epoch, "eval",
                                     self.b.lr(), result)
        final = {**result, "step": state.step,
                 "epoch": round(state.step / self.plan.steps_per_epoch, 4), "status": status}
        if hasattr(self.b, "comm_report"):  # engine ddp: what its hooks all-reduced
            final["comm"] = self.b.comm_report()
        weights = self.b.state_dict()
        if self.b.is_main:
            from safetensors.torch import save_file
            tensors = {k: v.contiguous() for k, v in weights.items()}
            # the weights first: a final.json beside them says they are whole
            replace_file(self.out / "model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
            if self.hf_spec is not None:  # the spec has a transformers counterpart
                from nnspec.weights.hf import write_hf_folder
                write_hf_folder(weights, self.hf_spec, self.out / "hf")
            atomic_write_json(self.out / "final.json", final)
        return final


# ---- the entry point -----------------------------------------------------------------------------

def check_settings(train: TrainSpec, parallel: ParallelSpec, world: int) -> Objective:
    """Every setting that can be checked without data, for this world size.

    Raises:
        TrainError: the first error config.check_parallel reports (warnings are logged), or a
            bad loss or metric.
    """
    objective = build_objective(train)
    for problem in check_parallel(train, parallel, world):
        text = f"{problem.section} setting `{problem.key}`: {problem.message}"
        if problem.severity == "error":
            raise TrainError(text, problem.help)
        if distributed.rank() == 0:
            log.warning("%s%s", text, f" ({problem.help})" if problem.help else "")
    return objective


def run(spec, train: TrainSpec | None = None, parallel: ParallelSpec | None = None,
        out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        stop_at: int | None = None, overwrite: bool = False,
        weights: str | Path | None = None) -> dict[str, Any]:
    """Train a spec's model and return its final evaluation.

    Runs in this process (CPU, or the GPU if there is one) unless a distributed launcher started
    it (`deepspeed --num_accelerators 2 --module nnspec.train ...`); then every rank calls this,
    and DeepSpeed trains with the emitted config (ZeRO stage, precision, offload, accumulation).

    Args:
        spec: a `nnspec.Spec` (from `nnspec.load`).
        train: the train section (default `TrainSpec()`: digits, one epoch, adamw).
        parallel: the parallel section (default `ParallelSpec()`).
        out_dir: where metrics.csv, tensorboard/, checkpoints/, final.json and model.safetensors
            go (rank 0 writes them). None: a new folder runs/<model>/version_N (under the
            runner, rank 0 claims it and tells the others), printed when the run starts.
        resume: continue the run in out_dir from its latest checkpoint; out_dir must be a run of
            this spec's model (its run.json says so).
        overwrite: let a run that starts over replace the files an earlier run wrote in out_dir
            (other files there are kept). Without it, a non-empty out_dir is refused.
        progress: show a progress bar (rank 0).
        stop_at: stop after this many steps and save a checkpoint, as an interruption would.
        weights: start from these weights (fine-tuning): a file or Hugging Face folder, mapped
            by the spec's weights section (`Spec.build(weights=...)`); a resumed run takes its
            checkpoint's weights instead.

    Evaluation runs every `eval_every` steps, else once per epoch of an epochs-based run, and at
    the end. SIGINT / SIGTERM (Ctrl-C) stop the run after the current step with a checkpoint.

    Returns:
        The final metrics, as in final.json: {"loss": 0.07, "accuracy": 0.98, "step": 690,
        "epoch": 30.0, "status": "completed" | "early_stopping"}; for a run cut short by a signal
        or `stop_at`: {"status": "interrupted" | "stopped", "step": N, ...last evaluation}.

    Raises:
        TrainError: a setting that cannot work; DataError (a TrainError) for missing, malformed or
            ill-fitting data. Both are raised before training starts, on every rank.
        OutputError (a ValueError): an out_dir that cannot be used (see runs.check_out_dir),
            raised before anything else, on every rank.
    """
    train = train or TrainSpec()
    parallel = parallel or ParallelSpec()
    if out_dir is not None:
        out_dir = runs.check_out_dir(out_dir, spec, resume, overwrite)
    elif resume:
        raise runs.OutputError("--resume needs --out: the folder of the run to continue")
    multi = distributed.launched()
    if weights is not None and multi and parallel.pipeline_stages > 1:
        raise TrainError("--weights does not yet load into pipeline stages",
                         "fine-tune without pipeline_stages, or export the weights into a "
                         "first checkpoint")
    world, rank = (distributed.world_size(), distributed.rank()) if multi else (1, 0)
    if multi:  # every rank checks the folder before rank 0 claims it: when an earlier run left
        distributed.barrier()  # the process group up, no rendezvous below holds rank 0 back
    if not multi and parallel.pipeline_stages > 1:
        log.warning("pipeline stages apply under the deepspeed runner; one process trains the "
                    "whole model")
        parallel = parallel.model_copy(update={"pipeline_stages": 1, "stage_boundaries": ()})
    if not multi and parallel.tensor > 1:
        log.warning("tensor parallelism applies under the deepspeed runner; one process trains "
                    "the whole model")
        parallel = parallel.model_copy(update={"tensor": 1})
    objective = check_settings(train, parallel, world)
    layout = resolve_layout(train, parallel, world)
    data = load_data(train.data, spec.summary(), split=train.split, seed=train.seed,
                     target=objective.target)
    stages = parallel.pipeline_stages if multi else 1
    # the stages of a pipeline share their batches, and so do the ranks of a tensor group
    data_rank, data_world = (tp.data_rank(rank, world, parallel.tensor) if parallel.tensor > 1
                             else pipe.data_rank(rank, world, stages))
    plan = BatchPlan(len(data.train), train.batch_size, layout.micro_batch, layout.grad_accum,
                     data_world, data_rank, train.seed)
    total = total_steps_for(train, len(data.train))
    config = _emit(train, parallel, world, total, largest_layer(spec.ir))
    if multi:
        distributed.init_process_group()
    backend = trainer = None
    created: list[Path] = []  # what the run made before its first output, undone on failure
    try:
        out_dir, created = _claim_out_dir(out_dir, spec, resume, data, multi, rank)
        distributed.barrier()
        seed_everything(train.seed)
        backend = backend_for(spec, train, parallel, config, objective, weights, multi)
        torch.manual_seed(train.seed + rank)  # per-rank dropout streams, after identical init
        trainer = Trainer(backend, data, objective, train, plan, total, out_dir, progress,
                          spec.name)
        trainer.hf_spec = spec if spec.settings.weights.hf_config is not None else None
        state = trainer.restore() if resume else None
        if resume and state is None and rank == 0:
            log.warning("no checkpoint in %s: starting from scratch", trainer.ckpt_dir)
        state = state or LoopState()
        trainer.open(state)
        created = []  # the run's outputs begin: from here on its folder is kept
        status = trainer.fit(state, stop_at)
        if status in ("interrupted", "stopped"):
            return {"status": status, "step": state.step, **state.last_eval}
        return trainer.finish(state, status)
    except BaseException:
        runs.abandon(created)
        raise
    finally:
        if trainer is not None:
            trainer.close()
        del trainer  # its reference to the engine too: close() must leave nothing to collect
        if backend is not None:
            backend.close()
        elif multi:
            distributed.shutdown()


def backend_for(spec, train: TrainSpec, parallel: ParallelSpec, config: dict, objective,
                weights=None, multi: bool = False):
    """What trains the model in this process: a pipeline stage or a DeepSpeed engine under the
    runner (`multi`), else a LocalBackend. Call it right after seeding: the weights are drawn
    here, in the same order on every path, so they do not depend on the layout."""
    if multi and parallel.pipeline_stages > 1:
        return pipe.PipelineBackend(spec, train, parallel, config, objective)
    if multi and parallel.engine == "ddp":  # torch DDP with its hooks (nnspec/train/ddp.py)
        from nnspec.train.ddp import DDPBackend
        return DDPBackend(_model(spec, parallel, weights), train, parallel, config)
    if multi and parallel.tensor > 1:  # split by AutoTP after a whole, seeded build
        return tp.TensorParallelBackend(spec, train, parallel, config, weights)
    if multi:
        zero3 = config if parallel.zero == 3 else None  # constructed inside zero.Init
        return distributed.DeepSpeedBackend(_model(spec, parallel, weights, zero3), train, config)
    if parallel.zero or "cpu" in (parallel.offload_optimizer, parallel.offload_param):
        log.warning("zero and offload apply under the deepspeed runner; one process "
                    "trains the whole model")
    if parallel.engine == "ddp":
        log.warning("engine ddp (comm_hook, local_sgd) applies under the deepspeed runner; one "
                    "process trains without communication")
    return LocalBackend(_model(spec, parallel, weights), train, parallel.precision,
                        config.get("scheduler"))


def _model(spec, parallel: ParallelSpec, weights=None, zero3: dict | None = None
           ) -> torch.nn.Module:
    """The spec's model (from `weights` when given), with activation checkpointing on the blocks
    the parallel section names. `zero3`, the DeepSpeed config of a ZeRO-3 run: constructed
    inside zero.Init, each rank holding its shard (weights are loaded whole, then partitioned)."""
    from nnspec.place.checkpointing import apply, checkpointed

    if zero3 is not None and weights is None:
        from nnspec.train.construct import zero3_model
        model = zero3_model(spec, zero3)
    else:
        model = spec.build(weights=weights)
    apply(model, checkpointed(spec.ir, parallel.activation_checkpointing)[0])
    return model


def _emit(train: TrainSpec, parallel: ParallelSpec, world: int, total: int,
          largest_layer: int | None = None) -> dict:
    """The DeepSpeed config for this run (ZeRO-3's gather and bucket sizes scaled to the model's
    `largest_layer`); one process uses its scheduler block."""
    from nnspec.lang.config import ParallelConfigError
    from nnspec.emit.deepspeed import emit_deepspeed_config
    try:
        return emit_deepspeed_config(train, parallel, world, total_steps=total,
                                     steps_per_print=1 << 30, largest_layer=largest_layer)
    except (ParallelConfigError, ValueError) as err:
        raise TrainError(f"cannot configure DeepSpeed: {err}") from None


def _claim_out_dir(out_dir: Path | None, spec, resume: bool, data: Data, multi: bool,
                   rank: int) -> tuple[Path, list[Path]]:
    """The run's folder, the same on every rank: rank 0 claims a new one when none was given
    (and tells the others), clears an earlier run's files when starting over, records the run.
    Also returns what rank 0 created (for runs.abandon)."""
    created: list[Path] = []
    if rank == 0:
        if out_dir is None:
            parent = runs.RUNS_ROOT / spec.name
            created = [p for p in (*reversed(parent.parents), parent)
                       if p.name and not p.exists()]
            out_dir = runs.new_run_folder(spec.name)
            created.append(out_dir)
            print(f"run folder: {out_dir}", file=sys.stderr, flush=True)
        created += runs.prepare(out_dir, spec, resume, data.vocab)
    if multi:
        out_dir = Path(distributed.broadcast(None if out_dir is None else str(out_dir)))
    return out_dir, created
