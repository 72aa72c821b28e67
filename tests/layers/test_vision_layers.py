"""Contract and reference checks for the vision, pooling, dropout and shape layer kinds."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from pydantic import ValidationError
from torchvision.models.shufflenetv2 import channel_shuffle as tv_channel_shuffle

from nnspec.layers import REGISTRY, ShapeError, T
from nnspec.runtime import HELPERS

from .layercheck import check_layer, namespace

CASES = [
    # ---- transposed and separable convolutions
    ("conv_transpose1d", {"out_channels": 4, "kernel_size": 3}, [T((2, 7))]),
    ("conv_transpose1d", {"out_channels": 6, "kernel_size": 4, "stride": 2, "padding": 1,
                          "groups": 2, "bias": False}, [T((4, 5))]),
    ("conv_transpose2d", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1,
                          "output_padding": 1}, [T((4, 5, 5))]),
    ("conv_transpose2d", {"out_channels": 6, "kernel_size": (3, 2), "stride": (2, 1),
                          "groups": 3, "dilation": 2}, [T((3, 4, 6))]),
    ("conv_transpose2d", {"out_channels": 2, "kernel": 2, "dilation": 3, "output_padding": 2},
     [T((4, 3, 3))]),
    ("conv_transpose3d", {"out_channels": 2, "kernel_size": 2, "stride": 2}, [T((3, 2, 3, 4))]),
    ("conv_transpose3d", {"out_channels": 4, "kernel_size": (1, 3, 3), "padding": (0, 1, 1),
                          "groups": 2, "bias": False}, [T((2, 3, 4, 4))]),
    ("separable_conv2d", {"out_channels": 8, "kernel_size": 3, "padding": 1}, [T((4, 6, 6))]),
    ("separable_conv2d", {"out_channels": 5, "kernel_size": (3, 5), "stride": 2, "dilation": 1,
                          "bias": False, "depth_multiplier": 2}, [T((3, 9, 11))]),
    ("separable_conv2d", {"out_channels": 4, "kernel_size": 3, "padding": "same", "dilation": 2},
     [T((2, 7, 7))]),
    # ---- normalization
    ("groupnorm", {"num_groups": 2}, [T((4, 3, 3))]),
    ("groupnorm", {"num_groups": 3, "affine": False, "eps": 1e-3}, [T((6, 5))]),
    ("groupnorm", {"num_groups": 1}, [T((4,))]),
    ("instancenorm1d", {}, [T((3, 8))]),
    ("instancenorm1d", {"affine": True, "track_running_stats": True}, [T((3, 8))]),
    ("instancenorm2d", {"eps": 1e-3, "affine": True}, [T((3, 4, 4))]),
    ("instancenorm3d", {"track_running_stats": True, "momentum": 0.2}, [T((2, 3, 3, 3))]),
    ("rmsnorm", {}, [T((4, 8))]),
    ("rmsnorm", {"dims": 2, "eps": 1e-6}, [T((3, 4, 8))]),
    ("rmsnorm", {"elementwise_affine": False}, [T((8,))]),
    # ---- pooling
    ("maxpool1d", {"kernel_size": 2}, [T((3, 9))]),
    ("maxpool1d", {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True},
     [T((3, 10))]),
    ("maxpool2d", {"kernel_size": 2}, [T((3, 8, 8))]),
    ("maxpool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, [T((3, 9, 9))]),
    ("maxpool2d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}, [T((3, 8, 8))]),
    ("maxpool2d", {"kernel_size": (2, 3), "stride": (1, 2), "padding": (1, 0)}, [T((2, 5, 7))]),
    ("maxpool2d", {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True},
     [T((2, 6, 6))]),
    # ceil_mode where the last window would start in the right padding (dropped, as torch does)
    ("maxpool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
     [T((2, 5, 5))]),
    ("maxpool3d", {"kernel_size": 2, "stride": 1}, [T((2, 3, 4, 5))]),
    ("maxpool3d", {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1),
                   "ceil_mode": True}, [T((2, 3, 6, 7))]),
    ("avgpool1d", {"kernel_size": 3}, [T((2, 10))]),
    ("avgpool1d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False,
                   "ceil_mode": True}, [T((2, 10))]),
    ("avgpool2d", {"kernel_size": 2}, [T((3, 8, 8))]),
    ("avgpool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                   "count_include_pad": False}, [T((3, 8, 8))]),
    ("avgpool2d", {"kernel_size": (2, 4), "stride": (2, 1)}, [T((1, 6, 7))]),
    ("avgpool2d", {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True},
     [T((2, 5, 5))]),
    ("avgpool3d", {"kernel_size": 2}, [T((2, 4, 4, 5))]),
    ("avgpool3d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
     [T((2, 5, 6, 7))]),
    ("adaptive_avgpool1d", {"output_size": 4}, [T((3, 10))]),
    ("adaptive_avgpool2d", {"output_size": 1}, [T((3, 7, 7))]),
    ("adaptive_avgpool2d", {"output_size": (2, 3)}, [T((3, 7, 8))]),
    ("adaptive_avgpool2d", {"output_size": (None, 3)}, [T((3, 7, 8))]),
    ("adaptive_avgpool3d", {"output_size": (1, 2, 2)}, [T((2, 3, 4, 5))]),
    ("adaptive_maxpool1d", {"output_size": 3}, [T((3, 10))]),
    ("adaptive_maxpool2d", {"output_size": (3, 3)}, [T((3, 7, 8))]),
    ("adaptive_maxpool2d", {"output_size": 12}, [T((3, 7, 8))]),
    ("adaptive_maxpool3d", {"output_size": 2}, [T((2, 4, 4, 4))]),
    ("global_avgpool", {}, [T((3, 5, 5))]),
    ("global_avgpool", {}, [T((3, 7))]),
    ("global_avgpool", {}, [T((3, 2, 3, 4))]),
    ("global_maxpool", {}, [T((3, 5, 5))]),
    ("global_maxpool", {}, [T((4, 6))]),
    # ---- dropout (modules run in eval: identity)
    ("dropout", {}, [T((3, 4))]),
    ("dropout", {"p": 0.1, "inplace": True}, [T((5,))]),
    ("dropout1d", {"p": 0.2}, [T((3, 6))]),
    ("dropout2d", {"p": 0.3}, [T((3, 4, 4))]),
    ("dropout3d", {}, [T((2, 3, 3, 3))]),
    ("alpha_dropout", {"p": 0.2}, [T((7,))]),
    ("stochastic_depth", {"p": 0.2}, [T((3, 4, 4))]),
    ("stochastic_depth", {"p": 0.5, "mode": "batch"}, [T((6,))]),
    # ---- shape plumbing
    ("reshape", {"shape": (4, 6)}, [T((2, 3, 4))]),
    ("reshape", {"shape": (-1, 2)}, [T((3, 4))]),
    ("reshape", {"shape": (24,)}, [T((2, 3, 4))]),
    ("reshape", {"shape": (2, -1, 3)}, [T((12,), "long")]),
    ("permute", {"dims": (0, 2, 1)}, [T((3, 4))]),
    ("permute", {"dims": (0, 3, 1, 2)}, [T((3, 4, 5))]),
    ("permute", {"dims": (0, -1, -3, -2)}, [T((3, 4, 5), "long")]),
    ("transpose", {"dim0": 1, "dim1": 2}, [T((3, 4))]),
    ("transpose", {"dim0": -1, "dim1": -2}, [T((3, 4, 5))]),
    ("transpose", {"dim0": 1, "dim1": 3}, [T((3, 4, 5), "bool")]),
    ("squeeze", {"dim": 1}, [T((1, 4))]),
    ("squeeze", {"dim": -1}, [T((3, 4, 1))]),
    ("squeeze", {"dim": (1, 3)}, [T((1, 4, 1))]),
    ("unsqueeze", {"dim": 1}, [T((3, 4))]),
    ("unsqueeze", {"dim": -1}, [T((3, 4))]),
    ("unsqueeze", {"dim": 2}, [T((5,), "long")]),
    ("split", {"split_size_or_sections": 2}, [T((6, 3))]),
    ("split", {"split_size_or_sections": 4, "dim": -1}, [T((3, 10))]),
    ("split", {"split_size_or_sections": (1, 2, 3), "dim": 2}, [T((3, 6))]),
    ("chunk", {"chunks": 3}, [T((6, 4))]),
    ("chunk", {"chunks": 3, "dim": 2}, [T((2, 7))]),
    ("chunk", {"chunks": 4, "dim": -1}, [T((2, 6))]),  # torch.chunk gives 3 pieces here
    ("chunk", {"chunks": 2, "dim": 1}, [T((5,), "long")]),
    ("select", {"dim": 1, "index": 0}, [T((3, 4))]),
    ("select", {"dim": -1, "index": -1}, [T((3, 4, 5))]),
    ("select", {"dim": 1, "index": 2}, [T((4,), "long")]),
    ("narrow", {"dim": 1, "start": 1, "length": 2}, [T((4, 3))]),
    ("narrow", {"dim": -1, "start": -3, "length": 3}, [T((4, 5))]),
    ("mean", {"dim": 1}, [T((3, 4))]),
    ("mean", {"dim": (2, 3), "keepdim": True}, [T((3, 4, 5))]),
    ("mean", {"dim": -1}, [T((3, 4, 5))]),
    ("sum", {"dim": 2}, [T((3, 4))]),
    ("sum", {"dim": (-1, 1), "keepdim": True}, [T((3, 4, 5))]),
    ("sum", {"dim": 1}, [T((3, 4), "long")]),
    ("sum", {"dim": 1}, [T((3, 4), "bool")]),
    ("stack", {}, [T((3, 4)), T((3, 4))]),
    ("stack", {"dim": -1}, [T((3, 4)), T((3, 4)), T((3, 4))]),
    ("stack", {"dim": 2}, [T((3,)), T((3,))]),
    ("pad", {"pad": (1, 2)}, [T((3, 4))]),
    ("pad", {"pad": (1, 1, 2, 0), "value": 0.5}, [T((3, 4, 4))]),
    ("pad", {"pad": (-1, 0, 1, 1)}, [T((3, 4, 4))]),
    ("pad", {"pad": (1, 1, 1, 1, 1, 1)}, [T((2, 3, 4))]),
    ("pad", {"pad": (2, 1), "mode": "reflect"}, [T((3, 4))]),
    ("pad", {"pad": (1, 1, 1, 1), "mode": "reflect"}, [T((3, 4, 4))]),
    ("pad", {"pad": (1, 1, 1, 1), "mode": "replicate"}, [T((3, 4, 4))]),
    ("pad", {"pad": (2, 2, 1, 1), "mode": "circular"}, [T((3, 4, 4))]),
    ("pad", {"pad": (1, 1, 1, 1, 1, 1), "mode": "replicate"}, [T((2, 3, 4, 4))]),
    ("pad", {"pad": (1, 0), "value": 9.0}, [T((5,), "long")]),
    ("upsample", {"scale_factor": 2}, [T((3, 4, 4))]),
    ("upsample", {"scale_factor": 1.5, "mode": "bilinear"}, [T((3, 5, 5))]),
    ("upsample", {"size": (7, 9), "mode": "bicubic", "align_corners": True}, [T((3, 4, 4))]),
    ("upsample", {"size": 9, "mode": "linear"}, [T((3, 4))]),
    ("upsample", {"scale_factor": (2.0, 1.0, 0.5), "mode": "trilinear", "align_corners": False},
     [T((2, 3, 4, 6))]),
    ("upsample", {"scale_factor": 3, "mode": "nearest-exact"}, [T((2, 5))]),
    ("upsample", {"scale_factor": 0.5, "mode": "area"}, [T((2, 6, 6))]),
    # ---- vision
    ("channel_shuffle", {"groups": 2}, [T((4, 3, 3))]),
    ("channel_shuffle", {"groups": 3}, [T((12, 5))]),
    ("channel_shuffle", {"groups": 4}, [T((8, 2, 3, 2))]),
]

NEW_KINDS = {
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "separable_conv2d",
    "groupnorm", "instancenorm1d", "instancenorm2d", "instancenorm3d", "rmsnorm",
    "maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d",
    "adaptive_avgpool1d", "adaptive_avgpool2d", "adaptive_avgpool3d",
    "adaptive_maxpool1d", "adaptive_maxpool2d", "adaptive_maxpool3d",
    "global_avgpool", "global_maxpool",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "stochastic_depth",
    "reshape", "permute", "transpose", "squeeze", "unsqueeze", "split", "chunk", "select",
    "narrow", "mean", "sum", "stack", "pad", "upsample", "channel_shuffle",
}


@pytest.mark.parametrize("kind,args,ins", CASES, ids=[c[0] for c in CASES])
def test_layer_rules_match_torch(kind, args, ins):
    check_layer(kind, args, ins)


def test_every_new_kind_is_covered_and_documented():
    assert NEW_KINDS <= set(REGISTRY)
    assert NEW_KINDS == {c[0] for c in CASES}
    for kind in NEW_KINDS:
        cls = REGISTRY[kind]
        assert cls.__doc__ and cls.__doc__.strip(), kind
        for name, field in cls.model_fields.items():
            assert field.description, (kind, name)


def test_pool_without_name_has_a_functional_form():
    for kind, args, ins in CASES:
        if REGISTRY[kind].category == "pooling":
            assert REGISTRY[kind].model_validate(args).functional_source(["x"], ins), kind


def test_ceil_mode_drops_a_window_that_starts_in_the_padding():
    layer = REGISTRY["maxpool2d"].model_validate({"kernel_size": 2, "stride": 2, "padding": 1,
                                                  "ceil_mode": True})
    assert layer.infer([T((2, 5, 5))]).shape == (2, 3, 3)
    assert F.max_pool2d(torch.randn(1, 2, 5, 5), 2, 2, 1, ceil_mode=True).shape == (1, 2, 3, 3)


def test_chunk_output_count_follows_torch():
    _, got = check_layer("chunk", {"chunks": 4, "dim": -1}, [T((2, 6))])
    assert len(got) == 3


# ---- numeric references -----------------------------------------------------------------------
def _build(kind, args, ins):
    layer = REGISTRY[kind].model_validate(args)
    return layer, eval(layer.init_source(ins), namespace())


@pytest.mark.parametrize("args", [
    {"out_channels": 8, "kernel_size": 3, "padding": 1},
    {"out_channels": 5, "kernel_size": (3, 5), "stride": 2, "bias": False, "depth_multiplier": 2},
])
def test_separable_conv2d_is_depthwise_then_pointwise(args):
    _, module = _build("separable_conv2d", args, [T((4, 9, 9))])
    dm = args.get("depth_multiplier", 1)
    depthwise = nn.Conv2d(4, 4 * dm, args["kernel_size"], stride=args.get("stride", 1),
                          padding=args.get("padding", 0), groups=4, bias=False)
    pointwise = nn.Conv2d(4 * dm, args["out_channels"], 1, bias=args.get("bias", True))
    depthwise.load_state_dict(module.depthwise.state_dict())
    pointwise.load_state_dict(module.pointwise.state_dict())
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(module(x), pointwise(depthwise(x)))
    w = module.depthwise.weight
    ref = F.conv2d(F.conv2d(x, w, stride=args.get("stride", 1), padding=args.get("padding", 0),
                            groups=4),
                   module.pointwise.weight, module.pointwise.bias)
    torch.testing.assert_close(module(x), ref)


@pytest.mark.parametrize("groups,shape", [(2, (2, 8, 3, 3)), (3, (1, 12, 4, 5)), (4, (3, 8, 1, 1))])
def test_channel_shuffle_matches_torchvision(groups, shape):
    layer, module = _build("channel_shuffle", {"groups": groups}, [T(shape[1:])])
    x = torch.randn(*shape)
    ref = tv_channel_shuffle(x, groups)
    assert torch.equal(module(x), ref)
    assert torch.equal(eval(layer.functional_source(["x"], [T(shape[1:])]), {**namespace(), "x": x}),
                       ref)


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.8])
def test_stochastic_depth_matches_torchvision(p, mode):
    _, module = _build("stochastic_depth", {"p": p, "mode": mode}, [T((3, 4, 4))])
    ref = torchvision.ops.StochasticDepth(p, mode)
    x = torch.randn(16, 3, 4, 4)
    module.eval(), ref.eval()
    assert torch.equal(module(x), x) and torch.equal(ref(x), x)
    module.train(), ref.train()
    for seed in range(3):
        torch.manual_seed(seed)
        got = module(x)
        torch.manual_seed(seed)
        torch.testing.assert_close(got, ref(x), rtol=0, atol=0)


def test_dropout_modules_are_identity_in_eval_and_random_in_train():
    for kind, shape in [("dropout", (3, 4)), ("dropout2d", (3, 4, 4)), ("alpha_dropout", (8,))]:
        _, module = _build(kind, {"p": 0.5}, [T(shape)])
        x = torch.randn(4, *shape)
        assert torch.equal(module.eval()(x), x)
        assert not torch.equal(module.train()(x), x)


def _run(kind, args, ins, *xs):
    layer = REGISTRY[kind].model_validate(args)
    names = [f"a{i}" for i in range(len(xs))]
    return eval(layer.functional_source(names, ins), {**namespace(), **dict(zip(names, xs))})


def test_shape_ops_equal_torch_expressions():
    x = torch.randn(2, 3, 4, 5)
    ins = [T((3, 4, 5))]
    assert torch.equal(_run("reshape", {"shape": (12, -1)}, ins, x), x.reshape(2, 12, 5))
    assert torch.equal(_run("permute", {"dims": (0, 2, 3, 1)}, ins, x), x.permute(0, 2, 3, 1))
    assert torch.equal(_run("select", {"dim": 1, "index": 0}, ins, x), x[:, 0])
    assert torch.equal(_run("select", {"dim": -1, "index": 2}, ins, x), x[..., 2])
    assert torch.equal(_run("narrow", {"dim": 2, "start": 1, "length": 2}, ins, x), x[:, :, 1:3])
    assert torch.equal(_run("transpose", {"dim0": 1, "dim1": -1}, ins, x), x.transpose(1, 3))
    assert torch.equal(_run("unsqueeze", {"dim": 1}, ins, x), x[:, None])
    a, b = _run("split", {"split_size_or_sections": (1, 2)}, ins, x)
    assert torch.equal(a, x[:, :1]) and torch.equal(b, x[:, 1:])
    torch.testing.assert_close(_run("mean", {"dim": (2, 3)}, ins, x), x.mean((2, 3)))
    _, gap = _build("global_avgpool", {}, ins)
    torch.testing.assert_close(gap(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    _, gmp = _build("global_maxpool", {}, ins)
    assert torch.equal(gmp(x), x.flatten(2).max(-1).values)


def test_runtime_helpers_are_self_contained():
    import ast
    from nnspec.runtime import helper_source
    for name in ("SeparableConv2d", "StochasticDepth", "GlobalAvgPool", "GlobalMaxPool"):
        tree = ast.parse(helper_source(name))
        assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree)), name
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "nnspec" not in names, name
        ns = {"torch": torch, "nn": nn, "F": F}
        exec(helper_source(name), ns)
        assert issubclass(ns[name], nn.Module)
    for kind in ("separable_conv2d", "stochastic_depth", "global_avgpool", "global_maxpool"):
        assert all(p in HELPERS for p in REGISTRY[kind].prelude), kind


# ---- refusals ---------------------------------------------------------------------------------
SHAPE_ERRORS = [
    ("maxpool2d", {"kernel_size": 2}, [T((8,))], "[B, 8]"),
    ("maxpool2d", {"kernel_size": 5}, [T((3, 4, 4))], "[B, 3, 4, 4]"),
    ("maxpool2d", {"kernel_size": 2, "padding": 2}, [T((3, 8, 8))], "half the kernel"),
    ("maxpool2d", {"kernel_size": (2, 2, 2)}, [T((3, 8, 8))], "kernel_size has 3 values"),
    ("avgpool1d", {"kernel_size": 2}, [T((3, 4, 4))], "[B, 3, 4, 4]"),
    ("adaptive_avgpool2d", {"output_size": (2, 2, 2)}, [T((3, 8, 8))], "output_size"),
    ("global_avgpool", {}, [T((8,))], "[B, 8]"),
    ("groupnorm", {"num_groups": 3}, [T((4, 5, 5))], "[B, 4, 5, 5]"),
    ("instancenorm2d", {}, [T((4, 5))], "[B, 4, 5]"),
    ("rmsnorm", {"dims": 3}, [T((4, 5))], "[B, 4, 5]"),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3}, [T((3, 5))], "[B, 3, 5]"),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "groups": 2}, [T((3, 5, 5))],
     "[B, 3, 5, 5]"),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "output_padding": 2},
     [T((4, 5, 5))], "output_padding"),
    ("separable_conv2d", {"out_channels": 4, "kernel_size": 7}, [T((3, 5, 5))], "[B, 3, 5, 5]"),
    ("dropout2d", {}, [T((3, 4))], "[B, 3, 4]"),
    ("reshape", {"shape": (5, 5)}, [T((2, 3, 4))], "[B, 2, 3, 4]"),
    ("reshape", {"shape": (5, -1)}, [T((2, 3, 4))], "[B, 2, 3, 4]"),
    ("transpose", {"dim0": 0, "dim1": 1}, [T((3, 4))], "[B, 3, 4]"),
    ("transpose", {"dim0": 1, "dim1": -3}, [T((3, 4))], "[B, 3, 4]"),
    ("permute", {"dims": (1, 0, 2)}, [T((3, 4))], "[B, 3, 4]"),
    ("permute", {"dims": (0, 1)}, [T((3, 4))], "[B, 3, 4]"),
    ("permute", {"dims": (0, 1, 1)}, [T((3, 4))], "[B, 3, 4]"),
    ("squeeze", {"dim": 1}, [T((3, 4))], "[B, 3, 4]"),
    ("squeeze", {"dim": 0}, [T((1, 4))], "batch"),
    ("unsqueeze", {"dim": 0}, [T((3, 4))], "batch"),
    ("select", {"dim": 1, "index": 3}, [T((3, 4))], "[B, 3, 4]"),
    ("select", {"dim": 0, "index": 0}, [T((3, 4))], "batch"),
    ("narrow", {"dim": 2, "start": 2, "length": 3}, [T((3, 4))], "[B, 3, 4]"),
    ("split", {"split_size_or_sections": (1, 1)}, [T((3, 4))], "[B, 3, 4]"),
    ("chunk", {"chunks": 2, "dim": 0}, [T((3, 4))], "batch"),
    ("mean", {"dim": (1, -2)}, [T((3, 4))], "twice"),
    ("stack", {}, [T((3, 4)), T((3, 5))], "[B, 3, 5]"),
    ("pad", {"pad": (1, 1, 1, 1, 1, 1)}, [T((3, 4))], "[B, 3, 4]"),
    ("pad", {"pad": (4, 0), "mode": "reflect"}, [T((3, 4))], "[B, 3, 4]"),
    ("pad", {"pad": (1, 1), "mode": "reflect"}, [T((2, 3, 4))], "[B, 2, 3, 4]"),
    ("pad", {"pad": (-2, -2)}, [T((3, 4))], "[B, 3, 4]"),
    ("pad", {"pad": (1, 1), "mode": "replicate", "value": 1.0}, [T((3, 4))], "constant"),
    ("upsample", {"scale_factor": 2, "mode": "bilinear"}, [T((3, 4))], "[B, 3, 4]"),
    ("upsample", {}, [T((3, 4, 4))], "exactly one"),
    ("upsample", {"scale_factor": 2, "size": 8}, [T((3, 4, 4))], "exactly one"),
    ("upsample", {"scale_factor": 2, "align_corners": True}, [T((3, 4, 4))], "align_corners"),
    ("channel_shuffle", {"groups": 3}, [T((4, 5, 5))], "[B, 4, 5, 5]"),
    ("channel_shuffle", {"groups": 2}, [T((4,))], "[B, 4]"),
]


@pytest.mark.parametrize("kind,args,ins,needle", SHAPE_ERRORS, ids=[c[0] for c in SHAPE_ERRORS])
def test_bad_inputs_raise_shape_error(kind, args, ins, needle):
    layer = REGISTRY[kind].model_validate(args)
    with pytest.raises(ShapeError) as err:
        layer.infer(ins)
    assert needle in err.value.message, err.value.message


def test_shape_errors_match_torch_refusals():
    """Where torch refuses the same input, it refuses it too (the rules are not stricter)."""
    cases = [("maxpool2d", {"kernel_size": 2, "padding": 2}, (3, 8, 8)),
             ("pad", {"pad": (4, 0), "mode": "reflect"}, (3, 4)),
             ("groupnorm", {"num_groups": 3}, (4, 5, 5))]
    for kind, args, shape in cases:
        layer = REGISTRY[kind].model_validate(args)
        with pytest.raises(ShapeError):
            layer.infer([T(shape)])
        with pytest.raises((RuntimeError, ValueError)):
            x = torch.randn(2, *shape)
            if getattr(layer, "functional_only", False):
                _run(kind, args, [T(shape)], x)
            else:
                eval(layer.init_source([T(shape)]), namespace())(x)


BAD_ARGS = [
    ("dropout", {"p": 1.0}),
    ("dropout", {"p": 1}),
    ("dropout", {"p": -0.1}),
    ("dropout", {"p": "0.5"}),
    ("stochastic_depth", {"p": 1.0}),
    ("stochastic_depth", {"p": 0.2, "mode": "col"}),
    ("stochastic_depth", {}),
    ("maxpool2d", {"kernel_size": "3"}),
    ("maxpool2d", {"kernel_size": 0}),
    ("maxpool2d", {"kernel_size": [2, 2]}),
    ("avgpool2d", {"kernel_size": 2, "count_include_pad": 1}),
    ("adaptive_avgpool2d", {"output_size": 2.0}),
    ("conv_transpose2d", {"out_channels": 4}),
    ("conv_transpose2d", {"out_channels": 4, "kernel_size": 3, "padding": "same"}),
    ("separable_conv2d", {"out_channels": 4, "kernel_size": 3, "depth_multiplier": 0}),
    ("groupnorm", {"num_groups": 0}),
    ("groupnorm", {"num_groups": 2.0}),
    ("instancenorm2d", {"affine": "yes"}),
    ("rmsnorm", {"eps": "small"}),
    ("reshape", {"shape": 12}),
    ("reshape", {"shape": (-1, -1)}),
    ("reshape", {"shape": (0, 4)}),
    ("permute", {"dims": [0, 2, 1]}),
    ("transpose", {"dim0": 1}),
    ("transpose", {"dim0": 1.0, "dim1": 2}),
    ("squeeze", {"dim": True}),
    ("split", {"split_size_or_sections": 0}),
    ("chunk", {"chunks": 2.5}),
    ("narrow", {"dim": 1, "start": 0, "length": 0}),
    ("mean", {}),
    ("sum", {"dim": 1, "keepdim": "no"}),
    ("pad", {"pad": (1, 2, 3)}),
    ("pad", {"pad": (1, 1), "mode": "mirror"}),
    ("upsample", {"scale_factor": -2.0}),
    ("upsample", {"scale_factor": 2, "mode": "cubic"}),
    ("channel_shuffle", {"groups": "2"}),
    ("channel_shuffle", {"groups": 2, "extra": 1}),
]


@pytest.mark.parametrize("kind,args", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_are_refused(kind, args):
    with pytest.raises(ValidationError):
        REGISTRY[kind].model_validate(args)


def test_p_equal_one_message_is_clear():
    with pytest.raises(ValidationError, match="p=1 would drop everything"):
        REGISTRY["dropout"].model_validate({"p": 1.0})
