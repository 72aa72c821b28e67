"""Recipes for element-wise math, comparisons, where, casts, position ranges, repeats and the
channels-first layer norm (recipes.py imports this module, which adds them to RECIPES)."""
from __future__ import annotations

from hypothesis import strategies as st

from nnspec.layers import T

from .recipes import Call, Draw, Extra, Recipe, add, ints, no_args, spatial_type

# long results must stay valid ids wherever an embedding may read them: positions is long only
# while it stays below every table (num_embeddings >= 4), and the generator never casts floats
# to long nor negates long tensors (cases.py and tests/layers/test_elementwise.py run those).
# NaN and inf would meet the interpreter's other kinds where they need not agree with torch (its
# relu gives 0 for NaN): log, sqrt and `number / x` see |x| + 1 or |x|, exp sees tanh(x)
_POSITIVE = (Call("abs", {}), Call("add", {"other": 1.0}))
for _kind, _before in [("exp", (Call("tanh", {}),)), ("log", _POSITIVE), ("sin", ()), ("cos", ()),
                       ("sqrt", (Call("abs", {}),)), ("neg", ())]:
    add(Recipe(_kind, (1, 2, 3, 4), no_args, before=_before))
add(Recipe("abs", (1, 2, 3, 4), no_args, dtypes=("float", "long")))


def compare_args(d: Draw, t: T) -> dict:
    return d(st.sampled_from([{}, {"other": 0}, {"other": 0.5}, {"other": -1.0}]))


def compare_extras(d: Draw, t: T, a: dict) -> list[Extra]:
    if "other" in a:
        return []
    return [Extra([Call("tanh" if t.dtype == "float" else "abs", {})])]


for _kind in ("eq", "ne", "lt", "le", "gt", "ge"):
    add(Recipe(_kind, (1, 2, 3), compare_args, dtypes=("float", "long"), extras=compare_extras))


def where_extras(d: Draw, t: T, a: dict) -> list[Extra]:
    x = Extra([Call("cast", {"dtype": "float"}, positional=1), Call("add", {"other": 2.0})])
    if "other" in a:
        return [x]
    y = Extra([Call("cast", {"dtype": d(st.sampled_from(["float", "long"]))}, positional=1)])
    return [x, y]


def bool_type(d: Draw) -> T:
    return T((d(ints(1, 4)), d(ints(1, 4))), "bool")


add(Recipe("where", (1, 2, 3), lambda d, t: d(st.sampled_from([{}, {"other": -1.5}, {"other": 3}])),
           dtypes=("bool",), extras=where_extras, sample=bool_type))


def cast_args(d: Draw, t: T) -> dict:
    to = {"float": ["float", "bool"], "long": ["float", "bool", "long"],
          "bool": ["float", "long", "bool"]}[t.dtype]
    return {"dtype": d(st.sampled_from(to))}


add(Recipe("cast", (1, 2, 3), cast_args, dtypes=("float", "long", "bool")))
add(Recipe("rsub", (1, 2, 3), lambda d, t: {"other": d(st.sampled_from([1.0, -2.0]))},
           dtypes=("float", "long")))
add(Recipe("rdiv", (1, 2, 3), lambda d, t: {"other": d(st.sampled_from([1.0, 0.5]))},
           before=_POSITIVE))


def positions_args(d: Draw, t: T) -> dict:
    dim = d(ints(1, len(t.shape)))
    start = d(ints(0, 1))
    long = t.shape[dim - 1] + start <= 4 and d(st.booleans())
    return {"dim": dim, "start": start, "dtype": "long" if long else "float"}


add(Recipe("positions", (1, 2, 3), positions_args, dtypes=("float", "long", "bool")))
add(Recipe("repeat_interleave", (1, 2, 3), lambda d, t: {
    "repeats": d(ints(1, 3)), "dim": d(ints(1, len(t.shape)))}, dtypes=("float", "long", "bool")))
add(Recipe("expand", (1, 2, 3), lambda d, t: {"shape": tuple(
    d(ints(1, 3)) if s == 1 else d(st.sampled_from([-1, s])) for s in t.shape)},
    dtypes=("float", "long", "bool"), sample=lambda d: T((1, d(ints(1, 4))))))
add(Recipe("layernorm2d", (3,), lambda d, t: {"eps": d(st.sampled_from([1e-5, 1e-6])),
                                              "elementwise_affine": d(st.booleans()),
                                              "bias": d(st.booleans())},
           sample=spatial_type(3, 1)))
