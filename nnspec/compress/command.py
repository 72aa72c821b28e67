"""`nnspec compress`: run a spec's compress section and measure what it gained.

    trained model (--weights, or trained here with the spec's train section)
      -> the directives in `order`: distill, prune (+ fine-tuning), quantize (+ QAT)
      -> model.pt (+ model.safetensors, + the pruned .nn spec), report.json

Everything is written to a staging folder beside DIR and renamed into place at the end in one
step (nnspec.outputs), so a run that fails leaves no half-written DIR, and an earlier output in
DIR is replaced whole.
"""
from __future__ import annotations

import copy
import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from nnspec.compress import finetune, labels, quantize, report
from nnspec.compress.checked import Plan
from nnspec.compress.distill import DistillLoss, teacher_model
from nnspec.compress.errors import CompressError, load_weights
from nnspec.compress.prune import Pruner


@dataclass
class State:
    """The model being compressed and what the steps learned about it."""

    model: nn.Module
    spec: object                      # the nnspec.Spec the model is built from
    float_counts: tuple[int, int]     # (params, nonzero) of the last float model
    spec_text: str | None = None      # a new .nn spec, when structured pruning changed widths
    extra: dict = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def is_float(self) -> bool:
        return not any(isinstance(m, quantize.WeightOnlyLinear) or "quantized" in type(m).__module__
                       for m in self.model.modules()) and not self.extra.get("quantized")


def compress(spec, out_dir: str | Path, weights: str | Path | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Compress `spec`'s model as its compress section says; write DIR; return the report.

    Raises:
        CompressError: no compress section, a missing or ill-fitting weights file, a teacher
            that cannot be loaded. TrainError/DataError from training.
    """
    plan: Plan | None = spec.compress_plan
    if plan is None or plan.empty:
        raise CompressError(f"{spec.source_name} has no compress directives",
                            "add a compress { prune = ... quantize = ... distill = ... } section")
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.settings.threads)
    try:
        return _compress(spec, plan, Path(out_dir), weights, log)
    finally:
        torch.set_num_threads(threads)


def _compress(spec, plan: Plan, out_dir: Path, weights, log) -> dict:
    torch.manual_seed(spec.settings.train.seed)
    session = finetune.open_session(spec)
    distilling = plan.distill is not None and "distill" in plan.order
    model = spec.build()
    if weights is not None:
        load_weights(model, Path(weights))
    elif not distilling:
        model = _train(spec, log)
    model.eval()
    state = State(model, spec, report.count_params(model), log=log)
    before_model, before_counts = copy.deepcopy(model), state.float_counts  # steps work in place
    teacher = None
    if distilling:
        teacher, _ = teacher_model(plan.distill, log)
        before_model, before_counts = teacher, report.count_params(teacher)
    for step in plan.order:
        if step == "distill" and distilling:
            _distill(state, plan, session, teacher)
        elif step == "prune" and plan.prune:
            _prune(state, plan, session)
        elif step == "quantize" and plan.quantize:
            _quantize(state, plan, session)
    return _finish(spec, plan, session, before_model, before_counts, state, out_dir)


def _train(spec, log) -> nn.Module:
    from nnspec.train import run

    log(f"training {spec.name} first (no --weights): {spec.settings.train.epochs or 1} epochs")
    with tempfile.TemporaryDirectory() as tmp:
        run(spec, spec.settings.train, spec.settings.parallel, tmp, progress=False)
        model = spec.build()
        load_weights(model, Path(tmp) / "model.safetensors")
    return model


# ---- the steps ---------------------------------------------------------------------------------

def _finetune_lr(plan: Plan, session) -> float:
    from nnspec.lang.config import optimizer_lr

    return plan.settings.finetune_lr or optimizer_lr(session.train.optimizer) / 10


def _prune(state: State, plan: Plan, session) -> None:
    structured = tuple(p for p in plan.prune if p.method == "channels")
    heads = tuple(p for p in plan.prune if p.method == "heads")
    masked = tuple(p for p in plan.prune if p.method not in ("channels", "heads"))
    if structured:
        from nnspec.compress.structured import prune_channels

        state.model, state.spec_text, state.spec = prune_channels(
            state.model, state.spec, structured, report.example_batch(session, 2))
        state.log(f"pruned channels: {report.count_params(state.model)[0]:,} parameters left")
    if heads:
        from nnspec.compress.heads import prune_heads

        state.model, state.spec_text, state.spec = prune_heads(state.model, state.spec, heads)
        state.log(f"pruned heads: {report.count_params(state.model)[0]:,} parameters left")
    pruner = Pruner(state.model, masked, seed=session.train.seed) if masked else None
    if pruner is not None:
        pruner.start()
    epochs = plan.settings.finetune_epochs
    if epochs:
        state.log(f"fine-tuning {epochs} epochs")
        steps = finetune.fit(state.model, session, epochs, _finetune_lr(plan, session),
                             seed=session.train.seed + 1,
                             on_step=pruner.update if pruner is not None else None)
        if pruner is not None and steps < pruner.last_step:
            pruner.finish()
    elif pruner is not None and pruner.gradual:
        pruner.finish()
    if pruner is not None:
        state.extra["sparsity"] = round(pruner.sparsity(), 4)
    state.float_counts = report.count_params(state.model)


def _quantize(state: State, plan: Plan, session) -> None:
    example = report.example_batch(session, 2)
    for d in plan.quantize:
        state.float_counts = report.count_params(state.model) if state.is_float \
            else state.float_counts
        if d.method == "dynamic":
            state.model = quantize.dynamic_int8(state.model, d)
        elif d.method == "static":
            prepared = quantize.prepare_static(state.model, d, example)
            quantize.calibrate(prepared, session.batches(d.calibrate))
            state.model = quantize.convert(prepared)
        elif d.method == "qat":
            prepared = quantize.prepare_static(state.model, d, example, qat=True)
            epochs = plan.settings.finetune_epochs or 1
            state.log(f"quantization-aware training, {epochs} epochs")
            finetune.fit(prepared, session, epochs, _finetune_lr(plan, session),
                         seed=session.train.seed + 2)
            state.model = quantize.convert(prepared)
        elif d.method == "weight_only":
            state.model = quantize.weight_only(state.model, d)
        elif d.method == "cast":
            state.model = quantize.cast(state.model, d)
        state.extra["quantized"] = True
        state.log(f"quantized: {d.method} {d.dtype} on {len(d.layers)} layers")


def _distill(state: State, plan: Plan, session, teacher: nn.Module) -> None:
    """Train the student from scratch with the teacher, and alone, for each seed: both on the
    same labelled samples (all, or `labels` of them) for the same steps."""
    d = plan.distill
    epochs = d.epochs or finetune.default_epochs(session.train, len(session.data.train))
    lr = None  # the train section's own lr: these are full training runs
    metric = session.metric
    train, size = session.data.train, session.train.batch_size
    cached = labels.teacher_outputs(teacher, d, train)   # once for every seed
    runs = []
    for k in range(d.seeds):
        seed = session.train.seed + k
        labelled, unlabelled = labels.split_for(d, train, seed)
        torch.manual_seed(seed)
        student = state.spec.build()
        torch.manual_seed(seed)
        alone = state.spec.build()
        loss = DistillLoss(teacher, student, d, session)
        finetune.fit(student, session, epochs, lr, seed=seed, loss_fn=loss,
                     extra_params=loss.parameters(),
                     batches=labels.StudentBatches(train, labelled, unlabelled, size, seed,
                                                   cached))
        loss.close()
        finetune.fit(alone, session, epochs, lr, seed=seed,
                     batches=labels.StudentBatches(train, labelled, labelled[:0], size, seed))
        runs.append({"seed": seed, "distilled": finetune.evaluate(student, session)[metric],
                     "alone": finetune.evaluate(alone, session)[metric],
                     "student": student, "alone_model": alone})
        few = f" ({len(labelled)} labels, {len(unlabelled)} unlabelled inputs)" \
            if d.labels < 1 else ""
        state.log(f"seed {seed}: distilled {metric} {runs[-1]['distilled']:.4f}, "
                  f"alone {runs[-1]['alone']:.4f}{few}")
    state.model, state.extra["alone_model"] = runs[0]["student"], runs[0]["alone_model"]
    distilled = statistics.mean(r["distilled"] for r in runs)
    alone_mean = statistics.mean(r["alone"] for r in runs)
    state.extra["distill"] = {
        "epochs": epochs, "labels": d.labels, "transfer": d.transfer,
        "labelled_samples": len(labelled), "unlabelled_samples": len(unlabelled),
        "temperature": d.temperature, "alpha": d.alpha,
        "seeds": [r["seed"] for r in runs],
        f"distilled_{metric}": [round(r["distilled"], 6) for r in runs],
        f"alone_{metric}": [round(r["alone"], 6) for r in runs],
        f"distilled_{metric}_mean": round(distilled, 6),
        f"alone_{metric}_mean": round(alone_mean, 6)}
    if metric == "accuracy":
        state.extra["distill"]["gain_points_mean"] = round(100 * (distilled - alone_mean), 3)
    state.float_counts = report.count_params(state.model)


# ---- measuring and writing ---------------------------------------------------------------------

def _finish(spec, plan: Plan, session, before_model, before_counts, state: State,
            out_dir: Path) -> dict:
    metric = session.metric
    settings = plan.settings
    example = report.example_batch(session, settings.latency_batch)
    alone = state.extra.pop("alone_model", None)
    models = [before_model, state.model] + ([alone] if alone is not None else [])
    lat = report.latencies(models, example, settings.latency_runs)
    blobs = [report.serialize(m) for m in models]
    counts = [before_counts, state.float_counts] + \
        ([report.count_params(alone)] if alone is not None else [])
    evals = [finetune.evaluate(m, session) for m in models]
    rows = [report.entry(c[0], c[1], len(b), t, e, metric)
            for c, b, t, e in zip(counts, blobs, lat, evals)]
    result = {"spec": spec.source_name, "model": spec.name, "metric": metric,
              "threads": torch.get_num_threads(), "latency_batch": settings.latency_batch,
              "order": list(plan.order), "before": rows[0], "after": rows[1],
              **report.ratios(rows[0], rows[1])}
    if alone is not None:
        result["student_alone"] = rows[2]
        result["distill"] = state.extra.pop("distill")
        result["param_ratio"] = round(rows[0]["params"] / rows[1]["params"], 3)
    if "sparsity" in state.extra:
        result["sparsity"] = state.extra["sparsity"]
    if plan.distill is None or "distill" not in plan.order:
        ref, out = finetune.outputs(before_model, session), finetune.outputs(state.model, session)
        if ref.shape == out.shape:
            result["outputs"] = {
                "max_abs_diff": round(float((ref - out).abs().max()), 6),
                "rel_error": round(float((ref - out).norm() / ref.norm().clamp(min=1e-12)), 6),
                "argmax_agreement": round(float((ref.argmax(-1) == out.argmax(-1)).float()
                                                .mean()), 6) if ref.dim() > 1 else None}
    files = {"model.pt": blobs[1], "report.json": (json.dumps(result, indent=2) + "\n").encode()}
    if state.is_float:
        files["model.safetensors"] = _safetensors(state.model)
    if state.spec_text is not None:
        name = f"{Path(spec.source_name).stem}_pruned.nn"
        files[name] = state.spec_text.encode()
        result["pruned_spec"] = name
        files["report.json"] = (json.dumps(result, indent=2) + "\n").encode()
    _write_folder(out_dir, files)
    return result


def _safetensors(model: nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in model.state_dict().items()})


def _write_folder(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write every file into a staging folder, then move it onto `out_dir` in one step (an
    earlier compress output there is replaced whole; a folder with other files is refused)."""
    from nnspec.outputs import write_folder

    write_folder(Path(out_dir), files, "compress")


def summary_table(result: dict) -> str:
    return report.table(result)
