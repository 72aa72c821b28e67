"""specs/efficientnet_b0.nn is torchvision's efficientnet_b0: MBConv blocks with squeeze-and-excitation,
the expand conv left out where the ratio is 1 (so the numbering inside `block` shifts as torchvision's
does), stochastic depth rising over the blocks. Its random weights load strictly, the outputs agree in
eval mode, and the spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

import nnspec

from .vision_reference import assert_flops_match_counter, assert_matches, code_lines

SPEC = "specs/efficientnet_b0.nn"


def test_efficientnet_b0_matches_torchvision(in_root):
    torch.manual_seed(0)
    assert_matches(torchvision.models.efficientnet_b0(weights=None), SPEC, 64, 5_288_548)


def _drop_probabilities(module: torch.nn.Module) -> dict[str, float]:
    return {name: m.p for name, m in module.named_modules() if name.endswith("stochastic_depth")}


def test_efficientnet_b0_stochastic_depth_as_torchvision(in_root):
    """torchvision's blocks keep a StochasticDepth(0.2 * id / 16) but call it only on a residual
    branch; the spec has one exactly where it is called, with the same probability."""
    reference = torchvision.models.efficientnet_b0(weights=None)
    model = nnspec.load(SPEC, size=32).build()
    called = {name: p for name, p in _drop_probabilities(reference).items()
              if reference.get_submodule(name.rsplit(".", 1)[0]).use_res_connect}
    assert len(called) == 9
    assert _drop_probabilities(model) == called


def test_efficientnet_b0_flops_match_flop_counter(in_root):
    assert_flops_match_counter(SPEC, 64)


def test_efficientnet_b0_is_shorter_than_torchvision(in_root):
    """torchvision's efficientnet.py from its configs to efficientnet_b0, without docstrings, the
    weights enums and the V2-only FusedMBConv, still takes more lines than the whole spec."""
    source = Path(torchvision.models.efficientnet.__file__).read_text()
    source = re.sub(r'"""[\s\S]*?"""', "", source)
    head = source[source.index("class _MBConvConfig"):source.index("class FusedMBConvConfig")]
    mbconv = source[source.index("class MBConv(nn.Module)"):source.index("class FusedMBConv(")]
    model = source[source.index("class EfficientNet(nn.Module)"):
                   source.index("class EfficientNet_B0_Weights")]
    b0 = source[source.index("def efficientnet_b0("):source.index("def efficientnet_b1(")]
    reference = sum(code_lines(part) for part in (head, mbconv, model, b0))
    assert code_lines(Path(SPEC).read_text()) < reference
