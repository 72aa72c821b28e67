"""An ensemble after its members trained: their weights in one module, learned combination
weights, and the evaluation of the members and the ensemble side by side (report.json and a
printed table), written as a run of one model is written (model.safetensors, final.json)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from nnspec.outputs import replace_file
from nnspec.train.batches import eval_batches
from nnspec.train.checkpoint import atomic_write_json
from nnspec.train.data import Data, Split

LEARN_ITERATIONS = 100    # L-BFGS iterations for the combination weights (a few parameters)


def combine_members(model: torch.nn.Module, weights: list[dict[str, torch.Tensor]]) -> None:
    """Load each member's trained weights into the Ensemble's members, strictly."""
    for member, state in zip(model.members, weights, strict=True):
        member.load_state_dict(state)


def evaluate(model: torch.nn.Module, split: Split, objective) -> dict[str, float]:
    """Loss and metrics of `model` over a whole split, in evaluation mode."""
    model.eval()
    sums = torch.zeros(len(objective.names) + 1, dtype=torch.float64)
    with torch.no_grad():
        for idx, valid in eval_batches(len(split), 1, 0):
            inputs, y = split.take(idx)
            out = model(*inputs)
            out = (out[0] if isinstance(out, (tuple, list)) else out).float()
            sums += objective.batch_sums(out[:valid], y[:valid])
    return objective.summarize(sums)


def fit_learned(model: torch.nn.Module, train: Split, objective) -> None:
    """combine = learned: the weights that minimize the loss of the ensemble's output on the
    training split, with the members frozen (full-batch L-BFGS; the members are in evaluation
    mode, so the objective is deterministic)."""
    model.eval()
    frozen = [p for p in model.members.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    n = len(train)
    optimizer = torch.optim.LBFGS([model.weights], lr=1.0, max_iter=LEARN_ITERATIONS,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for idx, valid in eval_batches(n, 1, 0):
            inputs, y = train.take(idx[:valid])
            loss = objective.loss(model(*inputs).float(), y) * (valid / n)
            loss.backward()
            total += loss.detach().double()
        return total
    try:
        optimizer.step(closure)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def write_outputs(model: torch.nn.Module, spec, members, results: dict[int, dict], data: Data,
                  objective, out_dir: Path, steps: int) -> dict[str, Any]:
    """model.safetensors (the Ensemble's state_dict), report.json, final.json (last: it says
    the others are whole); prints the table. Returns final.json's content."""
    from safetensors.torch import save_file

    ensemble = evaluate(model, data.test, objective)
    report = build_report(spec, members, results, ensemble, model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    replace_file(out_dir / "model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(out_dir / "report.json", report)
    print(render_table(report, objective.names), file=sys.stderr, flush=True)
    final = {**ensemble, "step": steps, "members": len(members), "status": "completed"}
    atomic_write_json(out_dir / "final.json", final)
    return final


def build_report(spec, members, results: dict[int, dict], ensemble: dict[str, float],
                 model: torch.nn.Module) -> dict[str, Any]:
    """The members' test metrics, their mean, and the ensemble's; with accuracy, the error ratio
    (ensemble error / mean member error: below 1 when the ensemble pays)."""
    section = spec.settings.ensemble
    rows = []
    for m in members:
        r = results[m.index]
        metrics = {k: v for k, v in r.items() if isinstance(v, float) and k != "epoch"}
        rows.append({"index": m.index, "name": m.name, "seed": m.seed,
                     "train_samples": r.get("train_samples"), "step": r.get("step"), **metrics})
    mean = {k: sum(row[k] for row in rows) / len(rows) for k in ensemble if k in rows[0]}
    vary = section.vary if isinstance(section.vary, str) else section.vary.name + "(" + ", ".join(
        [str(a) for a in section.vary.args] + [f"{k}={v}" for k, v in
                                               section.vary.kwargs.items()]) + ")"
    report = {"model": spec.name, "combine": section.combine, "vary": vary,
              "members": rows, "member_mean": mean, "ensemble": ensemble}
    if "accuracy" in ensemble:
        member_error = 1 - mean["accuracy"]
        report["error"] = {"member_mean": member_error, "ensemble": 1 - ensemble["accuracy"],
                           "ratio": (1 - ensemble["accuracy"]) / member_error
                           if member_error > 0 else None}
    if section.combine == "learned":
        report["learned_weights"] = torch.softmax(model.weights.detach(), 0).tolist()
    return report


def render_table(report: dict, names: list[str]) -> str:
    """Members, their mean and the ensemble, one row each, one column per metric."""
    head = f"{'':<22}{'seed':>6}{'samples':>9}" + "".join(f"{n:>12}" for n in names)
    lines = [f"ensemble of {len(report['members'])} (combine = {report['combine']}, "
             f"vary = {report['vary']})", head]
    for row in report["members"]:
        label = f"member {row['index']} {row['name']}"[:21]
        lines.append(f"{label:<22}{row['seed']:>6}{row['train_samples'] or '':>9}"
                     + "".join(f"{row.get(n, float('nan')):>12.4f}" for n in names))
    for label, values in (("mean of members", report["member_mean"]),
                          ("ensemble", report["ensemble"])):
        lines.append(f"{label:<37}" + "".join(f"{values.get(n, float('nan')):>12.4f}"
                                              for n in names))
    if report.get("error", {}).get("ratio") is not None:
        e = report["error"]
        lines.append(f"test error: ensemble {e['ensemble']:.4f} vs mean member "
                     f"{e['member_mean']:.4f} (ratio {e['ratio']:.3f})")
    return "\n".join(lines)
