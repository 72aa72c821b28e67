"""specs/densenet121.nn is torchvision's densenet121: named list items and comprehensions with
generated names give its exact state_dict keys; its random weights load strictly and the outputs
agree in eval mode. The spec is shorter than torchvision's model code for the same model."""
from pathlib import Path

import torch
import torchvision

import nnspec

from .reference import assert_same_state_keys, code_lines, definition_lines


def test_densenet121_matches_torchvision(in_root):
    torch.manual_seed(0)
    reference = torchvision.models.densenet121(weights=None).eval()
    spec = nnspec.load("specs/densenet121.nn", size=32)
    model = spec.build().eval()
    assert_same_state_keys(model, reference)
    with torch.no_grad():   # batch-norm statistics and affine terms that are not the identity
        for k, v in reference.state_dict().items():
            if k.endswith(("running_mean", "bias")):
                v.copy_(torch.rand_like(v) - 0.5)
            elif k.endswith("running_var") or (k.endswith("weight") and v.dim() == 1):
                v.copy_(torch.rand_like(v) + 0.5)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == 7_978_856


def test_densenet121_is_shorter_than_torchvision(in_root):
    """torchvision's densenet.py, without docstrings, the weights enums and the other depths,
    still takes more lines than the whole spec."""
    reference = definition_lines(torchvision.models.densenet, "class _DenseLayer",
                                 "def _load_state_dict")
    assert code_lines(Path("specs/densenet121.nn").read_text()) < reference
