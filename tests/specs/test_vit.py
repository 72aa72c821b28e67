"""specs/vit_b_16.nn is torchvision's vit_b_16: a patchify convolution, the class token and the
position embedding as raw parameters with torchvision's leading batch dim of 1, encoder layers
named `encoder_layer_{i}` by an f-string comprehension, nn.MultiheadAttention's packed
in_proj_weight; random weights load strictly and the outputs agree in eval mode, at a small
configuration of torchvision's VisionTransformer and at vit_b_16's own shapes."""
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

import nnspec

from .vision_reference import assert_same_state_keys, code_lines, definition_lines

SPEC = "specs/vit_b_16.nn"
# every argument of VisionTransformer that the spec takes, small enough for two cores
SMALL = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 4, "hidden_dim": 48,
         "mlp_dim": 96, "num_classes": 10}
OTHER = {"image_size": 24, "patch_size": 4, "num_layers": 3, "num_heads": 2, "hidden_dim": 16,
         "mlp_dim": 40, "num_classes": 7}


def _spec(config: dict, dropout: float = 0.0, attention_dropout: float = 0.0):
    # torchvision's `dropout` is `dropout_p` in the spec, where `dropout` is the layer kind
    return nnspec.load(SPEC, dropout_p=dropout, attention_dropout=attention_dropout, **config)


def _randomise(reference: torch.nn.Module) -> None:
    """Every tensor torchvision starts at a constant or near it (the zero class token and head,
    zero and 1e-6 biases, unit layer-norm weights) gets random values, so none can hide a
    difference."""
    with torch.no_grad():
        for k, v in reference.state_dict().items():
            if v.numel() == 1 or v.std() < 1e-3:
                v.copy_(torch.rand_like(v) + 0.5 if k.endswith("weight") and v.dim() == 1
                        else torch.rand_like(v) - 0.5)


@pytest.mark.parametrize("config", [SMALL, OTHER], ids=["small", "other"])
def test_vit_matches_torchvision(config, in_root):
    torch.manual_seed(0)
    reference = VisionTransformer(**config).eval()
    spec = _spec(config)
    model = spec.build().eval()
    assert_same_state_keys(model, reference)
    _randomise(reference)
    model.load_state_dict(reference.state_dict(), strict=True)
    size = config["image_size"]
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        want, got = reference(x), model(x)
    assert got.shape == want.shape == (3, config["num_classes"])
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert spec.summary()["params"] == sum(p.numel() for p in reference.parameters())


def test_vit_b_16_defaults_are_torchvision_s(in_root):
    """At its defaults the spec is vit_b_16: the same keys and shapes (class_token [1, 1, 768],
    encoder.pos_embedding [1, 197, 768]), 86,567,656 parameters and the 17.564 GFLOPS torchvision
    publishes for it."""
    with torch.device("meta"):   # shapes only: no need to initialise 86M weights
        reference = torchvision.models.vit_b_16(weights=None)
        model = nnspec.load(SPEC).build()
    assert_same_state_keys(model, reference)
    assert model.state_dict()["class_token"].shape == (1, 1, 768)
    assert model.state_dict()["encoder.pos_embedding"].shape == (1, 197, 768)
    want = sum(p.numel() for p in reference.parameters())
    meta = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta   # no download: metadata only
    assert want == meta["num_params"] == 86_567_656
    summary = nnspec.load(SPEC).summary()
    assert summary["params"] == want
    # torchvision's published GFLOPS are multiply-adds at 224x224; nnspec counts two per one
    assert round(summary["flops"] / 2 / 1e9, 3) == meta["_ops"] == 17.564


def test_vit_dropout_rates_are_torchvision_s(in_root):
    """torchvision's dropout and attention_dropout land in the same modules with the same rates,
    and the outputs agree in training mode when both are zero (no dropout draws to differ)."""
    reference = VisionTransformer(**SMALL, dropout=0.25, attention_dropout=0.125)
    model = _spec(SMALL, 0.25, 0.125).build()

    def rates(m):
        drops = {n: s.p for n, s in m.named_modules() if isinstance(s, torch.nn.Dropout)}
        attention = {n: s.dropout for n, s in m.named_modules()
                     if isinstance(s, torch.nn.MultiheadAttention)}
        return drops, attention

    ours, theirs = rates(model), rates(reference)
    assert ours == theirs
    assert set(ours[0].values()) == {0.25} and set(ours[1].values()) == {0.125}
    torch.manual_seed(1)
    reference = VisionTransformer(**SMALL).train()
    _randomise(reference)
    model = _spec(SMALL).build().train()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    got, want = model(x), reference(x)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()


def test_vit_is_shorter_than_torchvision(in_root):
    """torchvision's vision_transformer.py from MLPBlock to the VisionTransformer class's end,
    without docstrings (and without the conv-stem config class before it), takes more lines
    than the whole spec."""
    reference = definition_lines(torchvision.models.vision_transformer, "class MLPBlock",
                                 "def _vision_transformer")
    assert code_lines(Path(SPEC).read_text()) < reference


def test_vit_flops_are_torchvision_s(in_root):
    """`nnspec check`'s FLOPs are what torch's flop counter measures on torchvision's model,
    attention included. The counter has no formula for the fused kernels: with gradients on,
    nn.MultiheadAttention leaves its fast path (torch._native_multi_head_attention) for
    projections the counter sees, and the math kernel of scaled dot-product attention runs
    the attention as matmuls (on the CPU the flash kernel would hide them)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    reference = VisionTransformer(**SMALL).eval()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        reference(torch.randn(2, 3, 32, 32))
    assert _spec(SMALL).summary()["flops"] * 2 == counter.get_total_flops()
