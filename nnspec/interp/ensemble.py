"""The reference forward pass of an ensemble: every member through the interpreter, then the
combine rule computed from its definition in float64 (probabilities, not log-space tricks), so
it shares no code with the runtime helper (nnspec/runtime/ensemble.py) it is compared with."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from nnspec.interp.execute import Trace, execute
from nnspec.ir import ModuleDef


def run_ensemble(members: Sequence[ModuleDef], combine: str,
                 state: Mapping[str, torch.Tensor], inputs: Sequence[torch.Tensor], *,
                 trace: Trace | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eval-mode forward of an ensemble: (its output, each member's output).

    Args:
        members: each member's checked IR, in order.
        combine: mean_probs, mean_logits, vote or learned.
        state: the ensemble's state_dict: member i's tensors under `members.i.`, and `weights`
            for learned.
        inputs: one batched tensor per input, given to every member.
        trace: as for `run`, with paths under `members.i.`.
    """
    outputs = []
    for i, ir in enumerate(members):
        prefix = f"members.{i}."
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        member_trace = None if trace is None else \
            (lambda path, child, outs, p=prefix: trace(p + path, child, outs))
        (out,) = execute(ir, own, [x.clone() for x in inputs], member_trace)
        outputs.append(out)
    return combine_reference(combine, outputs, state.get("weights")), outputs


def combine_reference(combine: str, outputs: list[torch.Tensor],
                      weights: torch.Tensor | None = None) -> torch.Tensor:
    """The combine rules as the section documents them, in float64; the result has the
    members' dtype."""
    dtype = outputs[0].dtype
    wide = [o.to(torch.float64) for o in outputs]
    if combine == "mean_logits":
        return (sum(wide) / len(wide)).to(dtype)
    if combine == "vote":
        counts = torch.zeros_like(wide[0])
        for o in wide:
            # the first class that reaches the maximum: ties go to the lowest index
            top = o.max(dim=-1, keepdim=True).values
            positions = torch.arange(o.shape[-1], dtype=torch.float64).expand_as(o)
            first = torch.where(o == top, positions, float(o.shape[-1])).min(dim=-1).values
            counts += positions == first.unsqueeze(-1)
        return counts.to(dtype)
    probs = [torch.softmax(o, dim=-1) for o in wide]
    if combine == "mean_probs":
        share = [1.0 / len(probs)] * len(probs)
    elif combine == "learned":
        assert weights is not None, "learned needs the `weights` tensor"
        w = torch.exp(weights.to(torch.float64))
        share = list(w / w.sum())
    else:
        raise ValueError(f"no combine rule {combine!r}")
    return torch.log(sum(s * p for s, p in zip(share, probs))).to(dtype)
