import pytest

from nnspec.layers import T

from .layercheck import check_layer

CASES = [
    ("linear", {"out_features": 7}, [T((5,))]),
    ("linear", {"out_features": 7, "bias": False}, [T((3, 5))]),
    ("bilinear", {"out_features": 4}, [T((5,)), T((6,))]),
    ("identity", {}, [T((3, 4))]),
    ("conv1d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, [T((2, 9))]),
    ("conv2d", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
     [T((4, 9, 9))]),
    ("conv2d", {"out_channels": 8, "kernel_size": 3, "groups": 4, "padding": "same"}, [T((4, 6, 6))]),
    ("conv2d", {"out_channels": 6, "kernel_size": (3, 1), "dilation": 2}, [T((3, 9, 9))]),
    ("conv3d", {"out_channels": 2, "kernel_size": 2}, [T((1, 4, 4, 4))]),
    ("batchnorm1d", {}, [T((6,))]),
    ("batchnorm2d", {"eps": 1e-3}, [T((6, 3, 3))]),
    ("batchnorm3d", {"affine": False}, [T((2, 3, 3, 3))]),
    ("layernorm", {}, [T((4, 8))]),
    ("layernorm", {"dims": 2, "bias": False}, [T((4, 8))]),
    ("add", {}, [T((4, 8)), T((1, 8))]),
    ("mul", {"other": 0.5}, [T((4, 8))]),
    ("sub", {}, [T((4, 8)), T((4, 8))]),
    ("div", {}, [T((4, 8)), T((1, 8))]),
    ("matmul", {}, [T((4, 8)), T((8, 3))]),
    ("cat", {"dim": 1}, [T((2, 5)), T((3, 5))]),
    ("cat", {"dim": -1}, [T((2, 5)), T((2, 1))]),
    ("flatten", {}, [T((2, 3, 4))]),
    ("flatten", {"start_dim": 2}, [T((2, 3, 4))]),
    ("relu", {}, [T((5,))]),
    ("gelu", {"approximate": "tanh"}, [T((5,))]),
    ("leaky_relu", {"negative_slope": 0.2}, [T((5,))]),
    ("prelu", {"num_parameters": 3}, [T((3, 4))]),
    ("softmax", {"dim": 1}, [T((3, 4))]),
    ("log_softmax", {}, [T((3, 4))]),
    ("hardtanh", {"min_val": -2.0, "max_val": 2.0}, [T((5,))]),
    ("softplus", {"beta": 2.0}, [T((5,))]),
    ("elu", {}, [T((5,))]),
]


@pytest.mark.parametrize("kind,args,ins", CASES, ids=[c[0] for c in CASES])
def test_layer_rules_match_torch(kind, args, ins):
    check_layer(kind, args, ins)


@pytest.mark.parametrize("kind", ["relu", "relu6", "tanh", "sigmoid", "silu", "swish", "mish",
                                  "hardsigmoid", "hardswish", "tanhshrink"])
def test_simple_activations(kind):
    check_layer(kind, {}, [T((3, 5))])
