"""Training an ensemble: the members one after another in this process, or one per rank.

A spec with an `ensemble` section trains each member as a run of its own, in OUT/members/<i>/
(metrics.csv, checkpoints/, final.json, model.safetensors: what `nnspec train` writes for one
model), on the same split of the data: member i draws its initialization and its batches from
seed train.seed + i, and `vary` says what else differs: nothing (seed), a bootstrap sample of the
training split (drawn with replacement from that seed), or subset(f), a fraction of it drawn
without replacement. Then the Ensemble module (spec.build()) takes the members' weights,
`combine = learned` fits its weights on the training split with the members frozen, and OUT gets
what a run of one model writes (model.safetensors, final.json) plus report.json, the members'
test metrics and the ensemble's side by side (nnspec.train.ensemble_report).

placement = per_rank under the runner: rank i trains member i alone (no gradients cross ranks:
the members are independent runs), and rank 0 gathers their weights and writes the module and the
report. Same seeds, same members: the weights equal those of a sequential run.

A resumed run (--resume) keeps the members that finished (their final.json) and continues the
first unfinished one from its latest checkpoint.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnspec.lang.config import Call, ParallelSpec, TrainSpec, resolve_layout, total_steps_for
from nnspec.train import distributed, runs
from nnspec.train.batches import BatchPlan, seed_everything
from nnspec.train.data import Data, Split, load_data
from nnspec.train.errors import TrainError
from nnspec.train.local import LocalBackend
from nnspec.train.loop import LoopState, Trainer, _claim_out_dir, _emit, check_settings
from nnspec.train.ensemble_report import combine_members, fit_learned, write_outputs

log = logging.getLogger("nnspec.train")
MEMBERS = "members"     # OUT/members/<i>/: one member's run


def placement(spec, multi: bool, world: int) -> str:
    """sequential or per_rank, as the section says; auto: per_rank when the runner started as
    many ranks as there are members, else sequential.

    Raises:
        TrainError: per_rank with a world size other than the member count, or sequential
            under the runner (its ranks would all train every member).
    """
    count = len(spec.members)
    chosen = spec.settings.ensemble.placement
    if chosen == "auto":
        chosen = "per_rank" if multi and world == count else "sequential"
    if chosen == "per_rank" and world != count:
        raise TrainError(f"placement = per_rank trains one member per rank: {count} members "
                         f"need {count} ranks, not {world}",
                         f"launch with --num_accelerators {count}, or placement = sequential "
                         "without the runner")
    if chosen == "sequential" and multi and world > 1:
        raise TrainError(f"placement = sequential trains the members one after another in one "
                         f"process, but the runner started {world}",
                         "run `nnspec train` without the runner, or placement = per_rank with "
                         "one rank per member")
    return chosen


def vary_split(train: Split, vary: Any, seed: int) -> Split:
    """A member's training samples: all of them (seed), a bootstrap sample of as many drawn with
    replacement, or subset(f): round(f * n) of them without replacement, drawn from `seed`."""
    name, args = (vary, {}) if isinstance(vary, str) else (vary.name, dict(vary.kwargs))
    if isinstance(vary, Call) and vary.args:
        args.setdefault("fraction", vary.args[0])
    n = len(train)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    if name == "seed":
        return train
    if name == "bootstrap":
        index = rng.integers(0, n, size=n)
    elif name == "subset":
        fraction = args.get("fraction")
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) \
                or not 0 < fraction < 1 or round(fraction * n) < 1:
            raise TrainError(f"vary = subset({fraction}): the fraction must lie between 0 and 1 "
                             f"and leave a sample of the {n} training samples",
                             "e.g. vary = subset(0.5)")
        index = np.sort(rng.permutation(n)[:round(fraction * n)])
    else:
        raise TrainError(f"vary = {name}: members vary by seed, bootstrap or subset(fraction)")
    inputs, targets = train.take(torch.from_numpy(index))
    return Split(inputs, targets)


def run(spec, train: TrainSpec | None = None, parallel: ParallelSpec | None = None,
        out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        stop_at: int | None = None, overwrite: bool = False, weights: Any = None,
        **_more: Any) -> dict[str, Any]:
    """Train the members, combine them, and write the module and the report: `nnspec.train.run`
    for a spec with an ensemble section (the same arguments, the same returns and errors).
    `stop_at` counts the steps of the member in training; a run cut short returns its status
    and step with `members_done`, and --resume goes on from there."""
    train = train or TrainSpec()   # as loop.run; `_more`: loop.run's later arguments, which
    parallel = parallel or ParallelSpec()   # an ensemble's members do not take (yet)
    if out_dir is not None:
        out_dir = runs.check_out_dir(out_dir, spec, resume, overwrite)
    elif resume:
        raise runs.OutputError("--resume needs --out: the folder of the run to continue")
    if weights is not None:
        raise TrainError("--weights does not yet load into an ensemble's members",
                         "train the ensemble from scratch")
    multi = distributed.launched()
    world, rank = (distributed.world_size(), distributed.rank()) if multi else (1, 0)
    where = placement(spec, multi, world)
    objective = check_settings(train, parallel, 1)  # each member is a run of one process
    members = spec.members
    data = load_data(train.data, members[0].spec.summary(), split=train.split, seed=train.seed,
                     target=objective.target)
    if multi:
        distributed.init_process_group()
    created: list[Path] = []
    try:
        out_dir, created = _claim_out_dir(out_dir, spec, resume, data, multi, rank)
        distributed.barrier()
        created = []
        mine = members if where == "sequential" else [members[rank]]
        results = {}
        for member in mine:
            result = _train_member(member, data, objective, train, parallel, out_dir, resume,
                                   progress and rank == 0, stop_at)
            results[member.index] = result
            if result["status"] in ("interrupted", "stopped"):
                break
        if multi:
            results = _gather(results, rank)
        if rank != 0:
            return {"status": "completed", "member": members[rank].index}
        cut = next((r for r in results.values() if r["status"] in ("interrupted", "stopped")),
                   None)
        if cut is not None or len(results) < len(members):
            return {**(cut or {"status": "interrupted"}), "members_done": sum(
                r["status"] not in ("interrupted", "stopped") for r in results.values())}
        return _combine_and_write(spec, members, results, data, objective, train, out_dir)
    except BaseException:
        runs.abandon(created)
        raise
    finally:
        if multi:
            distributed.shutdown()


def _train_member(member, data: Data, objective, train: TrainSpec, parallel: ParallelSpec,
                  out_dir: Path, resume: bool, progress: bool, stop_at: int | None) -> dict:
    """One member's run in OUT/members/<i>/; returns its final metrics, its weights under
    "weights" (not written to JSON) and the samples it trained on."""
    folder = out_dir / MEMBERS / str(member.index)
    mine = Data(data.name, vary_split(data.train, member.vary, member.seed), data.test,
                data.classes, data.vocab)
    final_path = folder / "final.json"
    if resume and final_path.is_file() and (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file
        final = json.loads(final_path.read_text(encoding="utf-8"))
        return {**final, "weights": load_file(str(folder / "model.safetensors")),
                "train_samples": len(mine.train)}
    folder.mkdir(parents=True, exist_ok=True)
    layout = resolve_layout(train, parallel, 1)
    plan = BatchPlan(len(mine.train), train.batch_size, layout.micro_batch, layout.grad_accum,
                     1, 0, member.seed)
    total = total_steps_for(train, len(mine.train))
    config = _emit(train, parallel, 1, total)
    seed_everything(member.seed)  # the member's weights: as spec.build() draws them
    backend = LocalBackend(member.spec.build(), train, parallel.precision,
                           config.get("scheduler"))
    torch.manual_seed(member.seed)
    trainer = Trainer(backend, mine, objective, train, plan, total, folder, progress,
                      f"{member.name}[{member.index}]")
    try:
        state = trainer.restore() if resume else None
        state = state or LoopState()
        trainer.open(state)
        status = trainer.fit(state, stop_at)
        if status in ("interrupted", "stopped"):
            return {"status": status, "step": state.step, "member": member.index,
                    **state.last_eval}
        final = trainer.finish(state, status)
        return {**final, "weights": backend.state_dict(), "train_samples": len(mine.train)}
    finally:
        trainer.close()
        backend.close()


def _gather(results: dict[int, dict], rank: int) -> dict[int, dict]:
    """Every rank's member results (with their weights) on rank 0, over the process group."""
    box: list | None = [None] * distributed.world_size() if rank == 0 else None
    torch.distributed.gather_object(results, box, dst=0)
    if rank != 0:
        return {}
    merged: dict[int, dict] = {}
    for part in box:
        merged.update(part)
    return dict(sorted(merged.items()))


def _combine_and_write(spec, members, results: dict[int, dict], data: Data, objective,
                       train: TrainSpec, out_dir: Path) -> dict[str, Any]:
    """The Ensemble module with the members' weights (and fitted weights for `learned`), its
    evaluation beside the members', written as a run of one model writes."""
    seed_everything(train.seed)
    model = spec.build()
    combine_members(model, [results[m.index].pop("weights") for m in members])
    if spec.settings.ensemble.combine == "learned":
        fit_learned(model, data.train, objective)
    steps = sum(int(r.get("step", 0)) for r in results.values())
    return write_outputs(model, spec, members, results, data, objective, out_dir, steps)
