"""Every layer rule against the interpreter, kind by kind: for seeded random arguments and input
shapes, whatever `infer` accepts must run, and give the shapes and dtypes `infer` says. (torch
refusing something check accepts means a spec that checks but fails when it runs.)"""
from __future__ import annotations

import random

import pytest
import torch

from nnspec.interp import KINDS
from nnspec.interp.registry import Ctx
from nnspec.layers import REGISTRY, T
from nnspec.layers.base import ShapeError

TRIALS = 1000


def _spec_dtype(t: torch.Tensor) -> str:
    return "float" if t.is_floating_point() else "bool" if t.dtype == torch.bool else "long"


def run_rule(kind: str, args: dict, shapes: list[tuple], dtype: str = "float"):
    """None when the arguments or inputs are refused; else a mismatch description or ''."""
    try:
        layer = REGISTRY[kind].model_validate(args)
    except ValueError:
        return None
    ins = [T(s, dtype) for s in shapes]
    if dtype not in type(layer).input_dtypes:
        return None
    try:
        out = layer.infer(ins)
        weights = {n: torch.randn(s, dtype=torch.float64) for n, s in layer.params(ins).items()}
    except ShapeError:
        return None
    want = [(o.shape, o.dtype) for o in (out if isinstance(out, tuple) else (out,))]
    xs = [torch.randn(2, *s, dtype=torch.float64) if dtype == "float"
          else torch.randint(0, 3, (2, *s)) for s in shapes]
    try:
        y = KINDS[kind](layer, weights, xs, {}, Ctx(ins, torch.float64))
    except Exception as err:  # noqa: BLE001 - any failure is the finding
        return f"{kind}{args} on {shapes} {dtype}: infer gives {want}, running fails: {err}"
    got = [(tuple(t.shape[1:]), _spec_dtype(t)) for t in (y if isinstance(y, tuple) else (y,))]
    return "" if got == want else f"{kind}{args} on {shapes} {dtype}: infer {want}, ran {got}"


def _sizes(rng: random.Random, rank: int, low: int = 1, high: int = 8) -> tuple:
    return tuple(rng.randint(low, high) for _ in range(rank))


def _windowed(rng: random.Random):
    """Convolutions, pooling and resizing over 1 to 3 spatial dims."""
    dims = rng.choice([1, 2, 3])
    shape = (rng.choice([1, 2, 4]),) + _sizes(rng, dims)
    k, s, d, g = rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 3), rng.choice([1, 2])
    pad = rng.choice([0, 1, 2, "same", "valid", _sizes(rng, dims, 0, 2)])
    yield f"conv{dims}d", {"out_channels": rng.choice([2, 4]), "kernel_size": k, "padding": pad,
                           "stride": 1 if pad == "same" else s, "dilation": d, "groups": g,
                           "padding_mode": rng.choice(["zeros", "reflect", "replicate",
                                                       "circular"])}, [shape]
    yield f"conv_transpose{dims}d", {"out_channels": rng.choice([2, 4]), "kernel_size": k,
                                     "stride": s, "padding": rng.randint(0, 2), "groups": g,
                                     "output_padding": rng.randint(0, 2), "dilation": d}, [shape]
    if dims == 2:
        yield "separable_conv2d", {"out_channels": 3, "kernel_size": k, "padding": pad,
                                   "stride": 1 if pad == "same" else s, "dilation": d,
                                   "depth_multiplier": rng.choice([1, 2])}, [shape]
    pool = {"kernel_size": k, "stride": s, "padding": rng.randint(0, 2),
            "ceil_mode": rng.random() < 0.5}
    yield f"maxpool{dims}d", {**pool, "dilation": d}, [shape]
    yield f"avgpool{dims}d", {**pool, "count_include_pad": rng.random() < 0.5}, [shape]
    yield rng.choice(["adaptive_avgpool", "adaptive_maxpool"]) + f"{dims}d", \
        {"output_size": rng.randint(1, 6)}, [shape]
    modes = ["nearest", "nearest-exact", "area", "linear", "bilinear", "bicubic", "trilinear"]
    yield "upsample", {"scale_factor": round(rng.uniform(0.3, 3), 2),
                       "mode": rng.choice(modes)}, [shape]
    yield "upsample", {"size": rng.randint(1, 9), "mode": rng.choice(modes[3:]),
                       "align_corners": rng.choice([None, True, False])}, [shape]


def _plumbing(rng: random.Random):
    """Shape, reduction, arithmetic and normalization rules over 1 to 4 dims."""
    s = _sizes(rng, rng.randint(1, 4), high=5)
    n = len(s)
    dim = rng.randint(-n, n)
    pad = tuple(rng.randint(-2, 4) for _ in range(2 * rng.randint(1, 3)))
    yield "pad", {"pad": pad, "mode": rng.choice(["constant", "reflect", "replicate",
                                                  "circular"])}, [s]
    yield "split", {"split_size_or_sections": rng.randint(1, 4), "dim": dim}, [s]
    yield "chunk", {"chunks": rng.randint(1, 6), "dim": dim}, [s]
    yield "narrow", {"dim": dim, "start": rng.randint(-5, 5), "length": rng.randint(1, 5)}, [s]
    yield "select", {"dim": dim, "index": rng.randint(-5, 5)}, [s]
    yield "squeeze", {"dim": dim}, [s]
    yield "unsqueeze", {"dim": rng.randint(-n - 1, n + 1)}, [s]
    yield "transpose", {"dim0": dim, "dim1": rng.randint(-n, n)}, [s]
    yield "flatten", {"start_dim": dim, "end_dim": rng.randint(-n, n)}, [s]
    yield rng.choice(["sum", "mean"]), {"dim": tuple(rng.sample(range(-n, n + 1),
                                                                rng.randint(1, n))),
                                        "keepdim": rng.random() < 0.5}, [s]
    yield "stack", {"dim": rng.randint(-n - 1, n + 1)}, [s, s]
    broadcastable = tuple(rng.choice([x, 1]) for x in s)
    yield "cat", {"dim": dim}, [s, broadcastable]
    yield rng.choice(["add", "sub", "mul", "div"]), {}, [s, broadcastable]
    yield "matmul", {}, [s, _sizes(rng, n, high=5)]
    yield "reshape", {"shape": tuple(rng.choice([-1, 1, 2, 3, 4, 6])
                                     for _ in range(rng.randint(1, 3)))}, [s]
    order = list(range(1, n + 1))
    rng.shuffle(order)
    yield "permute", {"dims": tuple([0] + order)}, [s]
    yield "channel_shuffle", {"groups": rng.randint(1, 3)}, [s]
    yield rng.choice(["softmax", "log_softmax"]), {"dim": dim}, [s]
    yield rng.choice(["layernorm", "rmsnorm"]), {"dims": rng.randint(1, 3)}, [s]
    yield "groupnorm", {"num_groups": rng.randint(1, 3)}, [s]
    yield "prelu", {"num_parameters": rng.choice([1, s[0]])}, [s]
    yield rng.choice(["global_avgpool", "global_maxpool"]), {}, [s]
    yield rng.choice(["batchnorm1d", "batchnorm2d", "batchnorm3d", "instancenorm1d",
                      "instancenorm2d", "instancenorm3d"]), \
        {"track_running_stats": rng.random() < 0.5, "affine": rng.random() < 0.5}, [s]


def _elementwise(rng: random.Random):
    """Element-wise math, comparisons, casts, position ranges and repeats over 1 to 4 dims."""
    s = _sizes(rng, rng.randint(1, 4), high=5)
    n = len(s)
    yield rng.choice(["abs", "neg", "exp", "log", "sin", "cos", "sqrt"]), {}, [s]
    broadcastable = tuple(rng.choice([x, 1]) for x in s)
    compare = rng.choice(["eq", "ne", "lt", "le", "gt", "ge"])
    yield compare, {}, [s, broadcastable]
    yield compare, {"other": rng.choice([0, 1, 0.5])}, [s]
    yield "cast", {"dtype": rng.choice(["float", "long", "bool"])}, [s]
    yield rng.choice(["rsub", "rdiv"]), {"other": 2.0}, [s]
    yield "positions", {"dim": rng.randint(-n, n), "start": rng.randint(0, 3),
                        "dtype": rng.choice(["long", "float"])}, [s]
    yield "repeat_interleave", {"repeats": rng.randint(1, 3), "dim": rng.randint(-n, n)}, [s]
    yield "expand", {"shape": tuple(rng.choice([-1, x, 1 + rng.randint(0, 3)]) for x in s)}, \
        [tuple(rng.choice([x, 1]) for x in s)]
    yield "layernorm2d", {"bias": rng.random() < 0.5}, [s]


@pytest.mark.parametrize("family", [_windowed, _plumbing, _elementwise],
                         ids=["windowed", "plumbing", "elementwise"])
def test_infer_agrees_with_the_interpreter(family):
    rng = random.Random(family.__name__)
    problems, ran = [], 0
    for _ in range(TRIALS):
        dtype = rng.choice(["float", "long"]) if family is not _windowed else "float"
        for kind, args, shapes in family(rng):
            result = run_rule(kind, args, shapes, dtype)
            ran += result is not None
            if result:
                problems.append(result)
    assert not problems, "\n".join(problems[:10])
    assert ran > TRIALS  # most draws are accepted, so the sweep tests something
