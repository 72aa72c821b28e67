"""shifted_window_attention: its rules agree with the module it builds, and that module computes
what torchvision's ShiftedWindowAttention computes with the same weights, on maps that need
padding, shifts on one axis only and windows larger than the map."""
import pytest
import torch
from torchvision.models.swin_transformer import ShiftedWindowAttention as TorchvisionSWA

import nnspec
from nnspec.layers import REGISTRY, ShapeError, T
from nnspec.runtime import HELPERS

from .layercheck import check_layer

SHAPES = [
    ({"heads": 2, "window": 3, "shift": 1}, (6, 6, 4)),        # two windows a side, shifted
    ({"heads": 1, "window": 3, "shift": 2}, (5, 7, 2)),        # padded to 6 x 9
    ({"heads": 2, "window": 4, "shift": 2}, (3, 9, 4)),        # shifted along W only
    ({"heads": 4, "window": 7, "shift": 3}, (2, 2, 8)),        # window past the map: no shift
    ({"heads": 2, "window": 1}, (3, 2, 6)),
    ({"heads": 3, "window": 2, "qkv_bias": False, "proj_bias": False}, (4, 4, 6)),
    ({"heads": 2, "window": (2, 3), "shift": (1, 2)}, (5, 6, 4)),  # torchvision's [h, w] lists
    ({"heads": 1, "window": (3, 2), "shift": (0, 1)}, (6, 5, 2)),
    ({"heads": 2, "window": (4, 2), "shift": 1}, (3, 4, 2)),       # rows covered: no row shift
]


@pytest.mark.parametrize("args, shape", SHAPES)
def test_rules_agree_with_the_module(args, shape):
    check_layer("shifted_window_attention", args, [T(shape)])


@pytest.mark.parametrize("args, shape", SHAPES)
def test_same_as_torchvision(args, shape):
    torch.manual_seed(0)
    heads, window, shift = args["heads"], args["window"], args.get("shift", 0)
    window = list(window) if isinstance(window, tuple) else [window] * 2
    shift = list(shift) if isinstance(shift, tuple) else [shift] * 2
    theirs = TorchvisionSWA(shape[2], window, shift, heads,
                            qkv_bias=args.get("qkv_bias", True),
                            proj_bias=args.get("proj_bias", True)).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p))
    source = REGISTRY["shifted_window_attention"].model_validate(args).init_source([T(shape)])
    ours = eval(source, {**HELPERS}).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-6, rtol=0)


def test_refuses_what_it_cannot_take():
    cls = REGISTRY["shifted_window_attention"]
    with pytest.raises(ShapeError, match="channels-last image"):
        cls(heads=1, window=2).infer([T((4, 4))])
    with pytest.raises(ShapeError, match="not divisible by heads=3"):
        cls(heads=3, window=2).infer([T((4, 4, 4))])


def test_a_shift_as_large_as_the_window_is_a_located_error():
    text = ("model m {\n  input x: float[4, 4, 2]\n"
            "  attn: shifted_window_attention(1, 2, shift=2)\n}")
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="m.nn")
    message = str(err.value)
    assert "invalid `shift` for shifted_window_attention: a shift must be smaller than the " \
           "window (2), got 2" in message and "m.nn:3:40" in message
    with pytest.raises(nnspec.SpecError, match=r"smaller than the window \(\(3, 2\)\)"):
        nnspec.loads(text.replace("1, 2, shift=2", "1, [3, 2], shift=[1, 2]"), name="m.nn")
