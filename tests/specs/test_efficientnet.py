"""specs/efficientnet_b0.nn is torchvision's efficientnet_b0: MBConv blocks with squeeze-and-excitation,
the expand conv left out where the ratio is 1 (so the numbering inside `block` shifts as torchvision's
does), stochastic depth rising over the blocks. Its random weights load strictly, the outputs agree in
eval mode, and the spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

import nnspec


def test_efficientnet_b0_matches_torchvision(in_root):
    torch.manual_seed(0)
    reference = torchvision.models.efficientnet_b0(weights=None).eval()
    spec = nnspec.load("specs/efficientnet_b0.nn", size=64)
    model = spec.build().eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(theirs)   # the same keys, in the same order
    assert ours == theirs
    with torch.no_grad():   # batch-norm statistics, affine terms and the zero biases made random
        for k, v in reference.state_dict().items():
            if k.endswith(("running_mean", "bias")):
                v.copy_(torch.rand_like(v) - 0.5)
            elif k.endswith("running_var") or (k.endswith("weight") and v.dim() == 1):
                v.copy_(torch.rand_like(v) + 0.5)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == 5_288_548


def _drop_probabilities(module: torch.nn.Module) -> dict[str, float]:
    return {name: m.p for name, m in module.named_modules() if name.endswith("stochastic_depth")}


def test_efficientnet_b0_stochastic_depth_as_torchvision(in_root):
    """torchvision's blocks keep a StochasticDepth(0.2 * id / 16) but call it only on a residual
    branch; the spec has one exactly where it is called, with the same probability."""
    reference = torchvision.models.efficientnet_b0(weights=None)
    model = nnspec.load("specs/efficientnet_b0.nn", size=32).build()
    called = {name: p for name, p in _drop_probabilities(reference).items()
              if reference.get_submodule(name.rsplit(".", 1)[0]).use_res_connect}
    assert len(called) == 9
    assert _drop_probabilities(model) == called


def _code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


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
    reference = sum(_code_lines(part) for part in (head, mbconv, model, b0))
    assert _code_lines(Path("specs/efficientnet_b0.nn").read_text()) < reference


def test_efficientnet_b0_flops_match_flop_counter(in_root):
    """The FLOPs `nnspec check` reports are torch's count of the built model (per sample; torch
    counts a multiply-add as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load("specs/efficientnet_b0.nn", size=64)
    model = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()
