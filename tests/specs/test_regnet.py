"""specs/regnet_y_400mf.nn is torchvision's regnet_y_400mf: quoted, generated block names
(`trunk_output.block2.block2-0`), a projection only where the shape changes, group convolutions and
squeeze-and-excitation. Its random weights load strictly, the outputs agree in eval mode, the FLOPs
are torch's count, and the spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

import nnspec


def test_regnet_y_400mf_matches_torchvision(in_root):
    torch.manual_seed(0)
    reference = torchvision.models.regnet_y_400mf(weights=None).eval()
    spec = nnspec.load("specs/regnet_y_400mf.nn", size=64)
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
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == 4_344_144


def test_regnet_y_400mf_flops_match_flop_counter(in_root):
    """The FLOPs `nnspec check` reports are torch's count of the built model (per sample; torch
    counts a multiply-add as two)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load("specs/regnet_y_400mf.nn", size=64)
    model = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()


def _code_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_regnet_y_400mf_is_shorter_than_torchvision(in_root):
    """torchvision's regnet.py from its stem to the RegNet class, without docstrings, the weights
    enums and the other sizes' functions, still takes more lines than the whole spec."""
    source = Path(torchvision.models.regnet.__file__).read_text()
    source = re.sub(r'"""[\s\S]*?"""', "", source)
    model = source[source.index("class SimpleStemIN"):source.index("class RegNet_Y_400MF_Weights")]
    y400 = source[source.index("def regnet_y_400mf("):source.index("def regnet_y_800mf(")]
    reference = _code_lines(model) + _code_lines(y400)
    assert _code_lines(Path("specs/regnet_y_400mf.nn").read_text()) < reference
