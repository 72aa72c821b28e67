"""specs/swin_t.nn is torchvision's swin_t: shifted window attention with its relative position
bias table and index buffer, patch merging, and a stochastic-depth rate and a shift per block
keep torchvision's state_dict keys; random weights load strictly and the outputs agree in eval
mode, on maps that need padding to whole windows, with and without shifts, and with odd sizes
before a merge. The spec is shorter than torchvision's model code for the same model."""
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import swin_transformer

import nnspec

from .vision_reference import (assert_flops_match_counter, code_lines, definition_lines,
                               randomise_constants)


@pytest.mark.parametrize("size", [32, 36])
def test_swin_t_matches_torchvision(size, in_root):
    torch.manual_seed(0)
    reference = torchvision.models.swin_t(weights=None).eval()
    spec = nnspec.load("specs/swin_t.nn", size=size)
    model = spec.build().eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours == theirs
    # in the same order, PatchMerging's `reduction` before the `norm` that runs first: the spec
    # declares it first (`const reduction = linear(...)`), as torchvision creates it first
    assert list(ours) == list(theirs)
    randomise_constants(reference)
    with torch.no_grad():   # trunc_normal(0.02) tables: make the bias matter
        for k, v in reference.state_dict().items():
            if k.endswith("relative_position_bias_table"):
                v.copy_(torch.randn_like(v))
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters()) == 28_288_354


# other settings of the spec's parameters, as torchvision's SwinTransformer takes them
OTHER = {"embed_dim": 32, "depths": [2, 4, 1, 2], "heads": [2, 4, 4, 8], "window": 4,
         "stochastic_depth_prob": 0.5, "patch": 2}


def _reference(settings: dict) -> torch.nn.Module:
    if not settings:
        return torchvision.models.swin_t(weights=None)
    return swin_transformer.SwinTransformer(
        patch_size=[settings["patch"]] * 2, embed_dim=settings["embed_dim"],
        depths=settings["depths"], num_heads=settings["heads"],
        window_size=[settings["window"]] * 2,
        stochastic_depth_prob=settings["stochastic_depth_prob"])


@pytest.mark.parametrize("settings", [{}, OTHER], ids=["swin_t", "other"])
def test_swin_t_blocks_are_torchvision_s(settings, in_root):
    """Each block drops its branches with torchvision's rate, p * k / (blocks - 1) for the k-th
    block overall, and shifts its windows by half of one in every second block of a stage, at
    swin_t's settings and at others; with the others, the outputs agree too."""
    torch.manual_seed(0)
    reference = _reference(settings).eval()
    model = nnspec.load("specs/swin_t.nn", size=32, **settings).build().eval()

    def square(attn, name):   # torchvision: shift_size, window_size; the helper: shift, window
        return getattr(attn, f"{name}_size") if hasattr(attn, f"{name}_size") \
            else getattr(attn, name)

    def blocks(m):
        return [(n, s.stochastic_depth.p, square(s.attn, "shift"), square(s.attn, "window"))
                for n, s in m.named_modules() if hasattr(s, "attn")]

    ours, theirs = blocks(model), blocks(reference)
    assert len(ours) == len(theirs) == sum(settings.get("depths", [2, 2, 6, 2]))
    for (n, p, shift, window), (m, q, their_shift, their_window) in zip(ours, theirs):
        assert n == m and abs(p - q) <= 1e-12 and shift == their_shift and window == their_window
    randomise_constants(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()


def test_swin_t_is_shorter_than_torchvision(in_root):
    """The parts of torchvision's swin_transformer.py that swin_t uses (not the V2 classes),
    without docstrings, take more lines than the whole spec."""
    parts = [("def _patch_merging_pad", "class PatchMergingV2"),
             ("def shifted_window_attention", "class ShiftedWindowAttentionV2"),
             ("class SwinTransformerBlock(", "class SwinTransformerBlockV2"),
             ("class SwinTransformer(", "def _swin_transformer")]
    reference = sum(definition_lines(swin_transformer, a, b) for a, b in parts)
    assert code_lines(Path("specs/swin_t.nn").read_text()) < reference


def test_swin_t_flops_are_torchvision_s(in_root):
    """`nnspec check`'s FLOPs are what torch's flop counter measures on torchvision's model and
    on the built one (both count two per multiply-add; a batch of two)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = nnspec.load("specs/swin_t.nn", size=32)
    reference = torchvision.models.swin_t(weights=None).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        reference(torch.randn(2, 3, 32, 32))
    assert spec.summary()["flops"] * 2 == counter.get_total_flops()
    assert_flops_match_counter("specs/swin_t.nn", 32)
