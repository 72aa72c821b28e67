"""`nnspec plan` for an ensemble: each member's training planned as the spec's parallel section
says, and the peak per GPU over the whole run.

How the members are counted depends on the placement (ensemble.placement; auto is per_rank when
the GPUs number the members):
- sequential: the members train one after another on all the GPUs, in one process that holds
  the whole ensemble. A GPU holds the training member's plan (its weights, gradients, optimizer
  state and activations) plus the other members' fp32 weights, and the peak is the largest of
  those sums over the members.
- per_rank: each member trains alone on its own GPU (the world size must equal the member
  count), so the peak is the largest member's one-GPU plan.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace

FP32 = 4  # bytes of a parameter the ensemble holds while another member trains


class EnsemblePlanError(ValueError):
    """The flags ask for something an ensemble's plan cannot give (a usage error)."""


def plan_ensemble(spec, cluster, profile) -> dict:
    """Every member's plan and the ensemble's peak per GPU (see the module docstring)."""
    from nnspec.ensemble import resolved_placement
    from nnspec.plan.estimate import Model, evaluate
    from nnspec.plan.search import spec_choice

    placement = resolved_placement(spec.settings, cluster.world_size)
    if placement == "per_rank":
        if cluster.world_size != len(spec.members):
            raise EnsemblePlanError(
                f"placement = per_rank trains one member per GPU: {len(spec.members)} members "
                f"need {len(spec.members)} GPUs, not {cluster.world_size}")
        cluster = replace(cluster, gpus_per_node=1, nodes=1)
    params = [m.spec.summary()["params"] for m in spec.members]
    rows = []
    for i, member in enumerate(spec.members):
        model = Model(member.spec.ir, member.spec.settings.train, member.spec.settings.parallel)
        choice, note = spec_choice(model, cluster)
        plan = evaluate(model, choice, cluster, profile)
        others = FP32 * (sum(params) - params[i]) if placement == "sequential" else 0
        rows.append({"member": member.name, "params": params[i], "note": note,
                     "training_bytes": plan["per_gpu_bytes"]["total"], "other_members_bytes":
                     others, "per_gpu_bytes": plan["per_gpu_bytes"]["total"] + others,
                     "est_step_seconds": plan["est_step_seconds"]})
    peak = max(rows, key=lambda r: r["per_gpu_bytes"])
    return {"params": spec.summary()["params"], "placement": placement,
            "combine": spec.settings.ensemble.combine, "members": rows,
            "peak_per_gpu_bytes": peak["per_gpu_bytes"], "peak_member": peak["member"],
            "fits": peak["per_gpu_bytes"] <= cluster.gpu_memory,
            "gpu_memory": cluster.gpu_memory}


def run_ensemble(args, spec, cluster, profile) -> int:
    """Print the ensemble's plan (a table, or --json); exit 0 when it fits, else 1."""
    from nnspec.plan.estimate import PlanError, gib

    if args.auto or args.write:
        raise EnsemblePlanError("--auto searches one model's layout; an ensemble is planned "
                                "as its parallel section says, for each member")
    try:
        plan = plan_ensemble(spec, cluster, profile)
    except PlanError as err:  # a member's parallel section does not fit: as for one model
        print(f"nnspec: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan, indent=2, sort_keys=True))
        return 0 if plan["fits"] else 1
    print(f"{spec.summary()['model']}: {plan['params']:,} params, placement "
          f"{plan['placement']} on {cluster.world_size} GPU(s) of {gib(cluster.gpu_memory)}")
    head = ("member", "params", "its training", "other members", "per GPU", "step")
    table = [head] + [(r["member"], f"{r['params']:,}", gib(r["training_bytes"]),
                       gib(r["other_members_bytes"]) if r["other_members_bytes"] else "-",
                       gib(r["per_gpu_bytes"]), f"{r['est_step_seconds'] * 1e3:.2f} ms")
                      for r in plan["members"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    how = ("one member trains at a time on every GPU while the others' fp32 weights stay"
           if plan["placement"] == "sequential" else "each GPU trains its own member")
    verdict = "fits" if plan["fits"] else "does not fit"
    print(f"peak per GPU: {gib(plan['peak_per_gpu_bytes'])} (member {plan['peak_member']}; "
          f"{how}): {verdict}")
    return 0 if plan["fits"] else 1
