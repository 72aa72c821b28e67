"""The vision specs are torchvision's models: same state_dict keys and shapes, the reference's
random weights load strictly, and outputs agree in eval mode."""
import pytest
import torch
import torchvision

import nnspec

CASES = [
    ("resnet18", 64),
    ("resnet50", 64),
    ("vgg16", 32),
    ("mobilenet_v2", 64),
    ("shufflenet_v2_x1_0", 64),
]


@pytest.mark.parametrize("name,size", CASES, ids=[c[0] for c in CASES])
def test_matches_torchvision(name, size, in_root):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    spec = nnspec.load(f"specs/{name}.nn", size=size)
    model = spec.build().eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs
    model.load_state_dict(reference.state_dict(), strict=True)
    # batchnorm statistics that are not the identity, so eval mode really uses them
    with torch.no_grad():
        for (k, v) in reference.state_dict().items():
            if k.endswith("running_mean") or k.endswith("running_var"):
                v.copy_(torch.rand_like(v) + (0.5 if k.endswith("var") else -0.5))
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want = reference(x)
        got = model(x)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name,size", CASES[:2] + CASES[3:], ids=[c[0] for c in CASES[:2] + CASES[3:]])
def test_flops_match_flop_counter(name, size, in_root):
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load(f"specs/{name}.nn", size=size)
    model = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 3, size, size))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()
