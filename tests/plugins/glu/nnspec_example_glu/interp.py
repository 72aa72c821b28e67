"""The rule of nnspec's reference interpreter for `gated_linear`, written with other ops than
modules.py (a matmul and torch's own GLU), so the differential tests compare two formulas."""
import torch
import torch.nn.functional as F

from nnspec.interp.registry import kind


@kind("gated_linear")
def gated_linear(layer, w, args, kwargs, ctx):
    y = torch.matmul(args[0], w["proj.weight"].t())
    if "proj.bias" in w:
        y = y + w["proj.bias"]
    return F.glu(y, dim=-1)
