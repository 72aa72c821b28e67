"""The optimizer gets the parameters in groups of at most one layer (distributed.layer_groups), so
DeepSpeed's flat fp32 buffers, and the optimizer's temporaries over them, are a layer's."""
from __future__ import annotations

from torch import nn

import nnspec
from nnspec.ir import largest_layer
from nnspec.train.distributed import layer_groups

from .conftest import ROOT


def _sizes(groups):
    return [sum(p.numel() for p in g["params"]) for g in groups]


def test_groups_cover_every_trainable_parameter_once_in_module_order():
    tied = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), tied, nn.Linear(8, 30), nn.Linear(30, 2))
    model.append(nn.Linear(8, 8))
    model[-1].weight = tied.weight   # a tied weight is grouped once, where it is first met
    model[0].bias.requires_grad_(False)
    groups = layer_groups(model)
    flat = [p for g in groups for p in g["params"]]
    expected = [p for p in model.parameters() if p.requires_grad]
    assert len(flat) == len({id(p) for p in flat}) == len(expected)
    assert [id(p) for p in flat] == [id(p) for p in expected]
    layer = 8 * 30 + 30
    assert max(_sizes(groups)) == layer  # none larger than the largest layer
    # consecutive small layers share a group: 4x8 weight, then 8x8 + 8, then the last bias
    assert _sizes(groups) == [32 + 72, layer, 30 * 2 + 2 + 8]


def test_a_spec_model_is_grouped_by_its_largest_layer():
    spec = nnspec.load(ROOT / "specs" / "tiny_gpt_pipe.nn")
    model = spec.build()
    sizes = _sizes(layer_groups(model))
    assert max(sizes) == largest_layer(spec.ir)
    assert sum(sizes) == spec.summary()["params"]
    assert 1 < len(sizes) < len(list(model.parameters()))
