"""specs/convnext_tiny.nn is torchvision's convnext_tiny: its CNBlock's raw `layer_scale`
parameter of shape [C, 1, 1], LayerNorm2d, the Permutes inside `block` and a stochastic-depth rate
per block all keep torchvision's state_dict keys; random weights load strictly and the outputs agree
in eval mode. The spec is shorter than torchvision's model code for the same model."""
from pathlib import Path

import pytest
import torch
import torchvision

import nnspec

from .vision_reference import assert_same_state_keys, code_lines, definition_lines


def _randomise(reference: torch.nn.Module) -> None:
    """Every parameter torchvision initialises to a constant (zero biases, unit norm weights,
    layer scales of 1e-6) gets random values, so none of them can hide a difference."""
    with torch.no_grad():
        for k, v in reference.state_dict().items():
            if k.endswith("bias"):
                v.copy_(torch.rand_like(v) - 0.5)
            elif k.endswith("layer_scale") or (k.endswith("weight") and v.dim() == 1):
                v.copy_(torch.rand_like(v) + 0.5)


def test_convnext_tiny_matches_torchvision(in_root):
    torch.manual_seed(0)
    reference = torchvision.models.convnext_tiny(weights=None).eval()
    spec = nnspec.load("specs/convnext_tiny.nn", size=32)
    model = spec.build().eval()
    assert_same_state_keys(model, reference)
    _randomise(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == 28_589_128


@pytest.mark.parametrize("settings", [{}, {"stochastic_depth_prob": 0.3, "layer_scale": 0.5}])
def test_convnext_tiny_stochastic_depth_rates_are_torchvision_s(settings, in_root):
    """Each block drops its branch with torchvision's rate, p * k / (blocks - 1) for the k-th
    block overall; and the layer scale starts where torchvision's does, for torchvision's
    defaults and for other values of its two arguments."""
    reference = torchvision.models.convnext_tiny(weights=None, **settings)
    model = nnspec.load("specs/convnext_tiny.nn", size=32, **settings).build()

    def rates(m):
        return [(n, s.p, s.mode) for n, s in m.named_modules() if type(s).__name__ == "StochasticDepth"]

    ours, theirs = rates(model), rates(reference)
    assert [n for n, _, _ in ours] == [n for n, _, _ in theirs]
    assert len(ours) == 18
    for (_, p, mode), (_, q, their_mode) in zip(ours, theirs):
        assert abs(p - q) <= 1e-12 and mode == their_mode
    scales = {k: v for k, v in model.state_dict().items() if k.endswith("layer_scale")}
    assert len(scales) == 18
    for k, v in scales.items():
        assert torch.equal(v, reference.state_dict()[k])   # ones(C, 1, 1) * layer_scale


def test_convnext_tiny_is_shorter_than_torchvision(in_root):
    """torchvision's convnext.py from LayerNorm2d to the ConvNeXt class's end, without docstrings
    and the weights enums, takes more lines than the whole spec."""
    reference = definition_lines(torchvision.models.convnext, "class LayerNorm2d", "def _convnext")
    assert code_lines(Path("specs/convnext_tiny.nn").read_text()) < reference


def test_convnext_tiny_flops_are_torchvision_s(in_root):
    """`nnspec check`'s FLOPs (multiply-adds per sample) are what torch's flop counter measures
    on torchvision's model: two per multiply-add, a batch of two."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load("specs/convnext_tiny.nn", size=32)
    reference = torchvision.models.convnext_tiny(weights=None).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        reference(torch.randn(2, 3, 32, 32))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()
