"""Element-wise math, comparisons, where, casts, position ranges, repeats, `number - tensor` and
ConvNeXt's channels-first layer norm: each kind's generated call against the torch reference
(dtype included), against the interpreter's float64 formula, and its diagnostics."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nnspec
from nnspec import interp
from nnspec.interp.registry import Ctx
from nnspec.layers import REGISTRY, ShapeError, T
from nnspec.runtime import HELPERS, helper_source

from .layercheck import BATCH, check_layer, make_input

L, B = "long", "bool"
TORCH_DTYPE = {"float": torch.float64, "long": torch.long, "bool": torch.bool}

# (kind, args, input types, the torch reference on the batched inputs)
CASES = [
    ("abs", {}, [T((3, 4))], torch.abs),
    ("abs", {}, [T((5,), L)], torch.abs),
    ("neg", {}, [T((3, 4))], torch.neg),
    ("neg", {}, [T((5,), L)], torch.neg),
    ("exp", {}, [T((3, 4))], torch.exp),
    ("log", {}, [T((3, 4))], torch.log),
    ("sin", {}, [T((3, 4))], torch.sin),
    ("cos", {}, [T((2, 3, 4))], torch.cos),
    ("sqrt", {}, [T((3, 4))], torch.sqrt),
    ("eq", {}, [T((3, 4)), T((3, 4))], torch.eq),
    ("ne", {"other": 0}, [T((5,), L)], lambda x: torch.ne(x, 0)),
    ("lt", {"other": 0.25}, [T((3, 4))], lambda x: torch.lt(x, 0.25)),
    ("le", {}, [T((3, 4)), T((1, 4))], torch.le),
    ("gt", {}, [T((3, 4)), T((3, 1))], torch.gt),
    ("ge", {"other": 1}, [T((5,), L)], lambda x: torch.ge(x, 1)),
    ("gt", {}, [T((3,), B), T((3,), B)], torch.gt),
    ("where", {}, [T((3, 4), B), T((3, 4)), T((1, 4))], torch.where),
    ("where", {"other": 0.0}, [T((3, 4), B), T((3, 4))], lambda c, x: torch.where(c, x, 0.0)),
    ("where", {"other": 0}, [T((5,), B), T((5,), L)], lambda c, x: torch.where(c, x, 0)),
    ("where", {}, [T((5,), B), T((5,), L), T((5,))], torch.where),
    ("cast", {"dtype": "long"}, [T((3, 4))], lambda x: x.long()),
    ("cast", {"dtype": "bool"}, [T((3, 4))], lambda x: x.bool()),
    ("cast", {"dtype": "float"}, [T((5,), L)], lambda x: x.double()),
    ("cast", {"dtype": "long"}, [T((5,), B)], lambda x: x.long()),
    ("cast", {"dtype": "float"}, [T((3, 4))], lambda x: x),
    ("rsub", {"other": 1.0}, [T((3, 4))], lambda x: torch.rsub(x, 1.0)),
    ("rsub", {"other": 1.0}, [T((5,), L)], lambda x: 1.0 - x.double()),
    ("rdiv", {"other": 2.0}, [T((3, 4))], lambda x: 2.0 / x),
    ("rdiv", {"other": 1.0}, [T((5,), B)], lambda x: 1.0 / x.double()),
    ("positions", {}, [T((5,), L)], lambda x: torch.arange(5).expand(BATCH, 5)),
    ("positions", {"dim": 2, "start": 2, "dtype": "float"}, [T((3, 4))],
     lambda x: torch.arange(2, 6, dtype=torch.float64).expand(BATCH, 4)),
    ("positions", {"dim": -1}, [T((3, 4))], lambda x: torch.arange(4).expand(BATCH, 4)),
    ("repeat_interleave", {"repeats": 3, "dim": 1}, [T((2, 4))],
     lambda x: x.repeat_interleave(3, dim=1)),
    ("repeat_interleave", {"repeats": 2, "dim": -1}, [T((2, 4), L)],
     lambda x: x.repeat_interleave(2, dim=2)),
    ("expand", {"shape": (3, -1, 4)}, [T((1, 2, 1))], lambda x: x.expand(BATCH, 3, 2, 4)),
    ("expand", {"shape": (2, 3)}, [T((1, 3), B)], lambda x: x.expand(BATCH, 2, 3)),
]


def _id(case):
    kind, args, ins, _ = case
    return f"{kind}-" + "-".join(f"{k}={v}" for k, v in args.items()) + "-" + \
        "-".join(t.dtype for t in ins)


def _inputs(ins: list[T]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    xs = [make_input(t, gen) for t in ins]
    return [x.double() if x.is_floating_point() else x for x in xs]


def _run_generated(layer, ins, xs):
    names = [f"a{i}" for i in range(len(xs))]
    src = layer.functional_source(names, ins)
    ns = {"torch": torch, "F": F, "math": math, **dict(zip(names, xs))}
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # "float" follows the model's dtype, as in a run
    try:
        return eval(src, ns)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("kind,args,ins,ref", CASES, ids=[_id(c) for c in CASES])
def test_generated_call_matches_torch_and_the_interpreter(kind, args, ins, ref):
    check_layer(kind, args, ins)   # shapes, no parameters, no FLOPs
    layer = REGISTRY[kind].model_validate(args)
    out = layer.infer(ins)
    xs = _inputs(ins)
    got = _run_generated(layer, ins, xs)
    want = ref(*xs)
    assert got.dtype == want.dtype == TORCH_DTYPE[out.dtype], (got.dtype, want.dtype, out)
    assert tuple(got.shape) == (BATCH, *out.shape)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    mine = interp.KINDS[kind](layer, {}, [x.clone() for x in xs], {}, Ctx(ins, torch.float64))
    assert mine.dtype == got.dtype
    torch.testing.assert_close(mine, got, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_every_new_kind_is_covered():
    new = {k for k, c in REGISTRY.items() if c.__module__.rsplit(".", 1)[-1]
           in ("elementwise", "repeat", "channel_norm")}
    assert new - {c[0] for c in CASES} == {"layernorm2d"}   # layernorm2d: its tests below
    for kind in new:
        cls = REGISTRY[kind]
        assert cls.__doc__ and len(cls.__doc__.strip().splitlines()) == 1, kind
        assert cls.torch_name and all(f.description for f in cls.model_fields.values()), kind


def test_unary_math_in_float64_agrees_with_formulas():
    x = torch.linspace(0.1, 3.0, 7, dtype=torch.float64).reshape(1, 7)
    for kind, f in [("exp", math.exp), ("log", math.log), ("sin", math.sin), ("cos", math.cos),
                    ("sqrt", math.sqrt), ("abs", abs), ("neg", lambda v: -v)]:
        layer = REGISTRY[kind]()
        got = _run_generated(layer, [T((7,))], [x])
        want = torch.tensor([[f(v) for v in x[0].tolist()]], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("kind", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_with_nan_and_inf_agree_with_torch(kind):
    values = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.5, -2.0]
    x = torch.tensor([[a for a in values for _ in values]], dtype=torch.float64)
    y = torch.tensor([[b for _ in values for b in values]], dtype=torch.float64)
    layer = REGISTRY[kind]()
    ins = [T((len(values) ** 2,))] * 2
    want = _run_generated(layer, ins, [x, y])
    got = interp.KINDS[kind](layer, {}, [x, y], {}, Ctx(ins, torch.float64))
    assert torch.equal(got, want) and torch.equal(want, getattr(torch, kind)(x, y))


# ---- ConvNeXt's LayerNorm2d -------------------------------------------------------------------
@pytest.mark.parametrize("args", [{}, {"eps": 1e-6}, {"bias": False},
                                  {"elementwise_affine": False}])
def test_layernorm2d_rules(args):
    check_layer("layernorm2d", args, [T((6, 3, 5))])


def test_layernorm2d_is_torchvisions():
    from torchvision.models.convnext import LayerNorm2d as Reference

    layer = REGISTRY["layernorm2d"].model_validate({"eps": 1e-6})
    ns = {"torch": torch, "nn": nn, "F": F, "math": math}
    text = helper_source("LayerNorm2d")
    assert "LayerNorm2d" in HELPERS and "import" not in text and "nnspec" not in text
    exec(text, ns)   # model.py holds the helper's source verbatim
    mine = eval(layer.init_source([T((8, 5, 4))]), ns).double().eval()
    ref = Reference(8, eps=1e-6).double().eval()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    mine.load_state_dict(ref.state_dict(), strict=True)
    assert list(mine.state_dict()) == ["weight", "bias"]
    x = torch.randn(3, 8, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(mine(x), want, rtol=0, atol=0)
        got = interp.KINDS["layernorm2d"](layer, dict(ref.state_dict()), [x], {},
                                          Ctx([T((8, 5, 4))], torch.float64))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_layernorm2d_needs_an_image():
    with pytest.raises(ShapeError, match="expects a 4-d input"):
        REGISTRY["layernorm2d"]().infer([T((8, 5))])


# ---- the operator forms in a spec -------------------------------------------------------------
def _kinds_of(text: str) -> list[str]:
    spec = nnspec.loads(text, name="ops.nn")
    return [op.layer.kind for op in spec.ir.ops if op.layer is not None]


@pytest.mark.parametrize("expr,kinds,dtype", [
    ("1 - x", ["rsub"], "float"),
    ("2 / x", ["rdiv"], "float"),
    ("x - 1", ["sub"], "float"),
    ("0 < x", ["gt"], "bool"),
    ("0.5 >= x", ["le"], "bool"),
    ("x != y", ["ne"], "bool"),
    ("1 == x", ["eq"], "bool"),
    ("-x", ["mul"], "float"),
])
def test_operators_on_tensors(expr, kinds, dtype):
    text = f"model m {{\n  input x: float[4]\n  input y: float[4]\n  out {expr}\n}}"
    assert _kinds_of(text) == kinds
    assert nnspec.loads(text, name="ops.nn").ir.outputs[0].type.dtype == dtype


def test_number_minus_tensor_computes_the_reverse():
    spec = nnspec.loads("model m {\n  input x: float[4]\n  out 1 - x, 8 / x, 3 > x\n}",
                        name="rev.nn")
    x = torch.tensor([[0.5, 2.0, 4.0, -1.0]])
    a, b, c = spec.build().eval()(x)
    torch.testing.assert_close(a, 1 - x)
    torch.testing.assert_close(b, 8 / x)
    assert torch.equal(c, 3 > x)


def test_comparison_keeps_an_int_number():
    spec = nnspec.loads("model m {\n  input ids: long[4]\n  out where(ids != 0, ids, 7)\n}",
                        name="ids.nn")
    assert "ids != 0" in spec.source and spec.ir.outputs[0].type == T((4,), L)


# ---- diagnostics ------------------------------------------------------------------------------
@pytest.mark.parametrize("body,words,help_words", [
    ('input ids: long[5]\n  out log(ids)', "log needs a float tensor, got a long tensor [B, 5]",
     'cast(x, "float")'),
    ('input x: float[5]\n  out where(x, x, 0.0)', "the condition must be a bool tensor",
     "where(x > 0, x, y)"),
    ('input x: float[4, 5]\n  input y: float[3, 5]\n  out where(x > 0, x, y)',
     "where: condition [B, 4, 5], x [B, 4, 5] and y [B, 3, 5] do not broadcast (dim 1: 4 vs 4 "
     "vs 3)", "or 1 where it repeats"),
    ('input x: float[4, 5]\n  input y: float[5]\n  out where(x > 0, x, y)',
     "have different ranks", "use unsqueeze"),
    ('input m: bool[5]\n  out 1 - m', "rsub: `1.0 - x` is not defined for a bool tensor x [B, 5]",
     '1.0 - cast(mask'),
    ('input x: float[4, 5]\n  out expand(x, [4, 10])', "dim 2 of [B, 4, 5] has size 5",
     "repeat_interleave"),
    ('input x: float[4, 5]\n  out expand(x, [4])', "has 1 dims besides the batch",
     "unsqueeze"),
    ('input x: float[4]\n  out repeat_interleave(x, 2, dim=0)', "dim 0 is the batch dimension",
     "per-sample dims start at 1"),
    ('input x: float[4]\n  out x // x', "`//` is not defined on tensors",
     "comparisons == != < <= > >="),
])
def test_misuse_is_a_located_error_with_help(body, words, help_words):
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(f"model m {{\n  {body}\n}}", name="bad.nn")
    text = str(err.value)
    assert "bad.nn:" in text and words in text, text
    help_line = next(line for line in text.splitlines() if line.startswith("help:"))
    assert help_words in help_line, text
