"""The summary of an ensemble: a row per member (its layers nested under it, as `members.i.`
in the state_dict) and totals over all members, since its forward runs every one of them."""
from __future__ import annotations


def summarize_ensemble(members: list[tuple[str, dict]], combine: str,
                       depth: int | None = None) -> dict:
    """`members`: (the member as the section writes it, its own summary with every row), in
    order. The totals add the members' (the `learned` weights add one parameter per member;
    combining costs no FLOPs worth counting: a softmax and a mean over the outputs)."""
    first = members[0][1]
    rows: list[dict] = []
    for i, (label, summary) in enumerate(members):
        rows.append({"name": f"members.{i}", "kind": summary["model"],
                     "input_shape": _shapes([i["shape"] for i in summary["inputs"].values()]),
                     "output_shape": _shapes([o["shape"] for o in summary["outputs"]]),
                     "params": summary["params"], "flops": summary["flops"], "depth": 0,
                     "shared": False})
        rows += [{**row, "name": f"members.{i}.{row['name']}", "depth": row["depth"] + 1}
                 for row in summary["layers"]]
    weights = len(members) if combine == "learned" else 0
    if weights:
        rows.append({"name": "weights", "kind": "parameter", "input_shape": [],
                     "output_shape": [len(members)], "params": weights, "flops": 0, "depth": 0,
                     "shared": False})
    params = sum(s["params"] for _, s in members) + weights
    labels = ", ".join(label for label, _ in members)
    return {
        "model": f"ensemble of {len(members)} ({combine}): {labels}",
        "inputs": first["inputs"],
        "outputs": first["outputs"],
        "params": params,
        "trainable_params": params,
        "buffers": sum(s["buffers"] for _, s in members),
        "flops": sum(s["flops"] for _, s in members),
        "activation_bytes": sum(s["activation_bytes"] for _, s in members),
        "layers": rows if depth is None else [r for r in rows if r["depth"] <= depth],
        "ensemble": {"combine": combine, "members": [
            {"name": label, "model": s["model"], "params": s["params"], "flops": s["flops"]}
            for label, s in members]},
    }


def _shapes(shapes: list) -> list:
    """One tensor's shape ["B", ...], or a list of several (as the layer rows write them)."""
    shapes = [["B", *s] for s in shapes]
    return shapes[0] if len(shapes) == 1 else shapes
