"""One recipe per layer kind: which tensors it takes and how to draw valid arguments for one.

A recipe is data for the spec generator (specgen.py): the ranks and dtypes of the main input it
accepts, a strategy for an input type it takes (so that a generated model can start from one), a
function that draws arguments for a given input type, and the extra tensors it needs (a second
operand, keys and values, a mask), each made from the main input by a short chain of other kinds.
Tensors stay tiny (dims 1 to 6) so that every generated spec runs in milliseconds.

Arguments are drawn to be valid; the generator still runs each kind's own `infer` on them and
skips a draw that does not fit, so a recipe that is too generous costs a retry, not a failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from hypothesis import strategies as st

from nnspec.layers import REGISTRY, T

Draw = Callable[[st.SearchStrategy], Any]


@dataclass(frozen=True)
class Expr:
    """An argument written as an expression of block parameters (`c`, `2 * c`): its text, and
    its value under a binding of the parameters."""

    text: str
    value: Callable[[dict], Any]


@dataclass
class Call:
    """`kind(extra tensors..., args...)`: one application of a layer kind."""

    kind: str
    args: dict[str, Any]
    extras: list["Extra"] = field(default_factory=list)
    positional: int = 0   # how many leading arguments are written without their name
    # calls on the input first, in the same flow (`abs -> add(other=1.0) -> log`): they keep
    # a kind inside the domain where torch and the interpreter agree on every value
    before: list["Call"] = field(default_factory=list)

    def bound(self, bind: dict) -> dict:
        return {k: (v.value(bind) if isinstance(v, Expr) else v) for k, v in self.args.items()}


@dataclass
class Extra:
    """A further tensor input, made from the main input by a chain of calls; `keyword` names a
    tensor passed by keyword (`mask=m`)."""

    chain: list[Call]
    keyword: str | None = None


@dataclass(frozen=True)
class Recipe:
    kind: str
    ranks: tuple[int, ...]                 # per-sample ranks of the main input
    args: Callable[[Draw, T], dict | None]  # None: this input does not suit the kind
    dtypes: tuple[str, ...] = ("float",)
    extras: Callable[[Draw, T, dict], list[Extra]] = lambda draw, t, a: []
    width: str | None = None               # the argument that sets the output's last width
    sample: Callable[[Draw], T] | None = None   # an input type to start a model from
    before: tuple[Call, ...] = ()           # see Call.before

    def call(self, draw: Draw, t: T, args: dict) -> Call:
        """One application of this kind with `args` on a `t` input, its extra tensors drawn."""
        call = Call(self.kind, args, positional=draw(st.integers(0, 2)), before=list(self.before))
        call.extras = self.extras(draw, t, args)
        return call

    @property
    def sequential(self) -> bool:
        """May stand in a list or repeat and be named (a module with one output)."""
        cls = REGISTRY[self.kind]
        return not (getattr(cls, "functional_only", False)
                    or getattr(cls, "bare_parameter", False))

    @property
    def listable(self) -> bool:
        """May stand in a list or repeat: a module, or a function (nnspec wraps it in one). Not a
        kind drawn behind guard stages (`tanh -> exp`): a list item is one layer, not a flow."""
        return not (getattr(REGISTRY[self.kind], "bare_parameter", False) or self.before)

    def fits(self, t: T) -> bool:
        return len(t.shape) in self.ranks and t.dtype in self.dtypes

    def input_type(self, draw: Draw) -> T:
        if self.sample is not None:
            return self.sample(draw)
        return float_type(draw, draw(st.sampled_from(self.ranks)))


def float_type(draw: Draw, rank: int, lo: int = 1) -> T:
    """A float tensor type of this per-sample rank; spatial dims at least `lo`."""
    if rank == 0:
        rank = 1
    channels = draw(st.integers(1, 4))
    rest = [draw(st.integers(lo, 6 if rank <= 2 else 5 if rank == 3 else 3))
            for _ in range(rank - 1)]
    return T((channels, *rest))


def ints(lo: int, hi: int) -> st.SearchStrategy:
    return st.integers(lo, max(lo, hi))


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


RECIPES: dict[str, Recipe] = {}


def add(recipe: Recipe) -> None:
    assert recipe.kind in REGISTRY and recipe.kind not in RECIPES, recipe.kind
    RECIPES[recipe.kind] = recipe


def no_args(draw, t):
    return {}


# ---- activations and dropout: any float tensor, shape kept --------------------------------
for _kind in ["hardsigmoid", "hardswish", "identity", "mish", "relu", "relu6", "sigmoid", "silu",
              "swish", "tanh", "tanhshrink"]:
    add(Recipe(_kind, (1, 2, 3, 4), no_args))
add(Recipe("elu", (1, 2, 3), lambda d, t: {"alpha": d(st.sampled_from([0.5, 1.0, 2.0]))}))
add(Recipe("gelu", (1, 2, 3), lambda d, t: {"approximate": d(st.sampled_from(["none", "tanh"]))}))
add(Recipe("hardtanh", (1, 2, 3), lambda d, t: {"min_val": -0.5, "max_val": 0.75}))
add(Recipe("leaky_relu", (1, 2, 3), lambda d, t: {"negative_slope": 0.2}))
add(Recipe("softplus", (1, 2, 3), lambda d, t: {"beta": d(st.sampled_from([1.0, 2.0])),
                                                "threshold": 5.0}))
add(Recipe("log_softmax", (1, 2, 3), lambda d, t: {"dim": d(ints(1, len(t.shape)))}))
add(Recipe("softmax", (1, 2, 3), lambda d, t: {"dim": d(st.sampled_from([-1, len(t.shape)]))}))
add(Recipe("prelu", (1, 2, 3),
           lambda d, t: {"num_parameters": d(st.sampled_from([1, t.shape[0]])), "init": 0.1}))
for _kind, _rank in [("dropout", (1, 2, 3)), ("alpha_dropout", (1, 2)), ("dropout1d", (2,)),
                     ("dropout2d", (3,)), ("dropout3d", (4,))]:
    add(Recipe(_kind, _rank, lambda d, t: {"p": d(st.sampled_from([0.1, 0.5]))}))
add(Recipe("stochastic_depth", (1, 2, 3),
           lambda d, t: {"p": 0.2, "mode": d(st.sampled_from(["row", "batch"]))}))


# ---- linear -----------------------------------------------------------------------------
add(Recipe("linear", (1, 2, 3), lambda d, t: {"out_features": d(ints(1, 6)),
                                              "bias": d(st.booleans())}, width="out_features"))


def _project(width: int) -> list[Call]:
    return [Call("linear", {"out_features": width}, positional=1)]


add(Recipe("bilinear", (1, 2),
           lambda d, t: {"out_features": d(ints(1, 4)), "bias": d(st.booleans())},
           extras=lambda d, t, a: [Extra(_project(d(ints(1, 4))))], width="out_features"))


# ---- convolution ------------------------------------------------------------------------
def conv_args(d: Draw, t: T, transposed: bool = False) -> dict | None:
    spatial = t.shape[1:]
    channels = t.shape[0]
    groups = d(st.sampled_from(divisors(channels)))
    out = groups * d(ints(1, 3))
    kernel = d(ints(1, min(3, min(spatial))))
    args = {"out_channels": out, "kernel_size": kernel, "groups": groups}
    if d(st.booleans()):
        args["stride"] = d(ints(1, 2))
    if transposed:
        stride = args.get("stride", 1)
        args["padding"] = d(ints(0, (kernel - 1) // 2))
        if stride > 1 and d(st.booleans()):
            args["output_padding"] = 1
        if d(st.booleans()):
            args["dilation"] = d(ints(1, 2))
    else:
        pad = d(st.sampled_from(["same", 0, 1] if "stride" not in args else [0, 1]))
        args["padding"] = pad
        if pad != 0 and d(st.booleans()):
            args["padding_mode"] = d(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
        if d(st.booleans()) and min(spatial) >= 2 * kernel:
            args["dilation"] = 2
    args["bias"] = d(st.booleans())
    if len(spatial) == 2 and d(st.booleans()):
        args["kernel_size"] = (kernel, d(ints(1, min(3, spatial[1]))))
    return args


def spatial_type(rank: int, lo: int = 3) -> Callable[[Draw], T]:
    top = 5 if rank <= 3 else 4
    return lambda d: T((d(ints(1, 4)), *[d(ints(lo, top)) for _ in range(rank - 1)]))


for _n in (1, 2, 3):
    add(Recipe(f"conv{_n}d", (_n + 1,), conv_args, width="out_channels",
               sample=spatial_type(_n + 1)))
    add(Recipe(f"conv_transpose{_n}d", (_n + 1,), lambda d, t: conv_args(d, t, transposed=True),
               width="out_channels", sample=spatial_type(_n + 1)))
add(Recipe("separable_conv2d", (3,), lambda d, t: {
    "out_channels": d(ints(1, 5)), "kernel_size": d(ints(1, min(3, *t.shape[1:]))),
    "padding": d(st.sampled_from([0, 1, "same"])), "bias": d(st.booleans()),
    "depth_multiplier": d(ints(1, 2))}, width="out_channels", sample=spatial_type(3)))


# ---- pooling ----------------------------------------------------------------------------
def pool_args(d: Draw, t: T, maxpool: bool) -> dict:
    kernel = d(ints(1, min(3, *t.shape[1:])))
    args = {"kernel_size": kernel}
    if d(st.booleans()):
        args["stride"] = d(ints(1, 2))
    args["padding"] = d(ints(0, kernel // 2))
    args["ceil_mode"] = d(st.booleans()) and args["padding"] == 0
    if maxpool and d(st.booleans()) and min(t.shape[1:]) >= 2 * kernel:
        args["dilation"] = 2
    if not maxpool:
        args["count_include_pad"] = d(st.booleans())
    return args


for _n in (1, 2, 3):
    add(Recipe(f"maxpool{_n}d", (_n + 1,), lambda d, t: pool_args(d, t, True),
               sample=spatial_type(_n + 1, 2)))
    add(Recipe(f"avgpool{_n}d", (_n + 1,), lambda d, t: pool_args(d, t, False),
               sample=spatial_type(_n + 1, 2)))
    for _kind in (f"adaptive_avgpool{_n}d", f"adaptive_maxpool{_n}d"):
        add(Recipe(_kind, (_n + 1,), lambda d, t: {"output_size": d(st.one_of(
            ints(1, 3), st.tuples(*[st.sampled_from([1, 2, 3]) for _ in t.shape[1:]])))}))
add(Recipe("global_avgpool", (2, 3, 4), no_args))
add(Recipe("global_maxpool", (2, 3, 4), no_args))


# ---- normalization ----------------------------------------------------------------------
def norm_args(d: Draw, t: T) -> dict:
    return {"eps": d(st.sampled_from([1e-5, 1e-3])), "affine": d(st.booleans()),
            "track_running_stats": d(st.booleans())}


add(Recipe("batchnorm1d", (1, 2), norm_args))
add(Recipe("batchnorm2d", (3,), norm_args))
add(Recipe("batchnorm3d", (4,), norm_args))
for _n in (1, 2, 3):
    add(Recipe(f"instancenorm{_n}d", (_n + 1,), norm_args, sample=spatial_type(_n + 1, 2)))
add(Recipe("groupnorm", (1, 2, 3), lambda d, t: {
    "num_groups": d(st.sampled_from(divisors(t.shape[0]))),
                                                 "affine": d(st.booleans())}))
add(Recipe("layernorm", (1, 2, 3), lambda d, t: {"dims": d(ints(1, len(t.shape))),
                                                 "elementwise_affine": d(st.booleans()),
                                                 "bias": d(st.booleans())}))
add(Recipe("rmsnorm", (1, 2, 3), lambda d, t: {"dims": d(ints(1, len(t.shape))),
                                               "eps": d(st.sampled_from([None, 1e-6])),
                                               "elementwise_affine": d(st.booleans())}))


# ---- embedding and learned tensors ------------------------------------------------------
def ids_type(d: Draw) -> T:
    return T((d(ints(1, 5)),), "long")


# ids come from model inputs; the harness draws them below the table size it finds in the spec
add(Recipe("embedding", (1,), lambda d, t: {"num_embeddings": d(ints(4, 8)),
                                            "embedding_dim": d(ints(1, 6))},
           dtypes=("long",), width="embedding_dim", sample=ids_type))
add(Recipe("position_embedding", (1, 2), lambda d, t: {
    "num_positions": t.shape[0] + d(ints(0, 2)), "embedding_dim": d(ints(1, 6))},
    dtypes=("float", "long"), width="embedding_dim"))
add(Recipe("sinusoidal_position_encoding", (2,), lambda d, t: {
    "max_len": t.shape[0] + d(ints(0, 3)),
    **({"d_model": t.shape[1]} if d(st.booleans()) else {})}))
def parameter_args(d, t):
    """Shapes like the input's, or any shape; sometimes stored with the batch dim as 1 the way
    torchvision keeps a class token ([1, 1, 768] with batch_dim=true)."""
    shape = d(st.sampled_from([t.shape, t.shape[-1:], (1,) * (len(t.shape) - 1) + t.shape[-1:],
                               tuple(d(st.lists(st.integers(1, 4), min_size=1, max_size=3)))]))
    batch = d(st.booleans())
    return {"shape": (1, *shape) if batch else shape,
            "init": d(st.sampled_from(["zeros", "ones", "normal", "uniform", 0.5])), "std": 0.5,
            "batch_dim": True if batch else None}


add(Recipe("parameter", (1, 2, 3), parameter_args, dtypes=("float", "long")))
add(Recipe("zeros_like", (1, 2, 3), lambda d, t: {"dtype": "float"}, dtypes=("float", "long")))
add(Recipe("ones_like", (1, 2, 3), lambda d, t: {"dtype": "float"}, dtypes=("float", "long")))


# ---- recurrent --------------------------------------------------------------------------
def rnn_args(d: Draw, t: T, kind: str) -> dict:
    args = {"hidden_size": d(ints(1, 4)), "num_layers": d(ints(1, 2)),
            "bidirectional": d(st.booleans()), "bias": d(st.booleans()), "last": d(st.booleans())}
    if kind == "rnn":
        args["nonlinearity"] = d(st.sampled_from(["tanh", "relu"]))
    return args


def seq_type(d: Draw, heads: int = 1) -> T:
    return T((d(ints(1, 4)), heads * d(ints(1, 3))))


for _kind in ("rnn", "lstm", "gru"):
    add(Recipe(_kind, (2,), lambda d, t, k=_kind: rnn_args(d, t, k), width="hidden_size",
               sample=lambda d: seq_type(d)))


# ---- attention and transformer layers ----------------------------------------------------
def heads_of(d: Draw, t: T) -> int | None:
    return d(st.sampled_from(divisors(t.shape[1])))


def padding_mask(keep: bool) -> Extra:
    """A mask over the key positions of the main input: nothing padded, so no row of scores is
    all masked (that would give NaN on both sides and prove nothing)."""
    fill = "ones_like" if keep else "zeros_like"
    dtype = "long" if keep else "bool"
    return Extra([Call("mean", {"dim": 2}), Call(fill, {"dtype": dtype})])


def mha_extras(d: Draw, t: T, a: dict) -> list[Extra]:
    extras = []
    if d(st.booleans()):
        kv = [Call("transpose", {"dim0": 1, "dim1": 2}),
              Call("linear", {"out_features": d(ints(1, 4))},
                                                              positional=1),
              Call("transpose", {"dim0": 1, "dim1": 2})]   # other length, same width
        extras = [Extra(kv), Extra(kv)]
    elif d(st.booleans()):
        extras = [Extra(padding_mask(False).chain, "key_padding_mask")]
    return extras


add(Recipe("multihead_attention", (2,), lambda d, t: {
    "num_heads": heads_of(d, t), "bias": d(st.booleans()), "causal": d(st.booleans()),
    "dropout": 0.1}, extras=mha_extras, sample=lambda d: seq_type(d, 2)))


def transformer_args(d: Draw, t: T) -> dict:
    return {"nhead": heads_of(d, t), "dim_feedforward": d(ints(1, 6)),
            "activation": d(st.sampled_from(["relu", "gelu"])), "norm_first": d(st.booleans()),
            "bias": d(st.booleans()), "causal": d(st.booleans())}


def encoder_extras(d: Draw, t: T, a: dict) -> list[Extra]:
    if d(st.booleans()):
        return [Extra(padding_mask(False).chain, "src_key_padding_mask")]
    return []


add(Recipe("transformer_encoder_layer", (2,), transformer_args, extras=encoder_extras,
           sample=lambda d: seq_type(d, 2)))
add(Recipe("transformer_decoder_layer", (2,), transformer_args,
           extras=lambda d, t, a: [Extra([Call("relu", {})])], sample=lambda d: seq_type(d, 2)))


# ---- tensor ops -------------------------------------------------------------------------
def arith(kind: str) -> Recipe:
    def extras(d, t, a):
        if "other" in a:
            return []
        # a positive second operand keeps division well away from zero
        return [Extra([Call("sigmoid", {}), Call("add", {"other": 1.0})])]

    return Recipe(kind, (1, 2, 3), lambda d, t: d(st.sampled_from([{}, {"other": 2.0}])),
                  extras=extras)


for _kind in ("add", "sub", "mul", "div"):
    add(arith(_kind))
# x ** 2.0 and x ** 3.0: integral exponents keep a negative base real (no NaN to compare)
add(Recipe("pow", (1, 2, 3), lambda d, t: {"other": d(st.sampled_from([2.0, 3.0]))}))
add(Recipe("matmul", (2, 3), no_args,
           extras=lambda d, t, a: [Extra([Call("transpose", {"dim0": -1, "dim1": -2})])]))
add(Recipe("cat", (1, 2, 3), lambda d, t: {"dim": d(ints(1, len(t.shape)))},
           extras=lambda d, t, a: [Extra([Call("tanh", {})])] * d(ints(1, 2))))
add(Recipe("stack", (1, 2, 3), lambda d, t: {"dim": d(ints(1, len(t.shape) + 1))},
           extras=lambda d, t, a: [Extra([Call("sigmoid", {})])]))
add(Recipe("chunk", (1, 2, 3), lambda d, t: {"chunks": d(ints(2, 3)),
                                             "dim": d(ints(1, len(t.shape)))}))


def split_args(d: Draw, t: T) -> dict:
    dim = d(ints(1, len(t.shape)))
    size = t.shape[dim - 1]
    if size > 1 and d(st.booleans()):
        first = d(ints(1, size - 1))
        return {"split_size_or_sections": (first, size - first), "dim": dim}
    return {"split_size_or_sections": d(ints(1, size)), "dim": dim}


add(Recipe("split", (1, 2, 3), split_args))
add(Recipe("flatten", (2, 3, 4), lambda d, t: {"start_dim": d(ints(1, len(t.shape))),
                                               "end_dim": -1}))
add(Recipe("mean", (2, 3), lambda d, t: {"dim": d(ints(1, len(t.shape))),
                                         "keepdim": d(st.booleans())}))
add(Recipe("sum", (2, 3), lambda d, t: {"dim": d(st.sampled_from([1, (1, len(t.shape))])),
                                        "keepdim": d(st.booleans())}))


def narrow_args(d: Draw, t: T) -> dict:
    dim = d(ints(1, len(t.shape)))
    size = t.shape[dim - 1]
    start = d(ints(0, size - 1))
    return {"dim": dim, "start": start, "length": d(ints(1, size - start))}


add(Recipe("narrow", (1, 2, 3), narrow_args))
add(Recipe("select", (2, 3), lambda d, t: {"dim": (dim := d(ints(1, len(t.shape)))),
                                           "index": d(ints(-t.shape[dim - 1],
                                                           t.shape[dim - 1] - 1))}))
add(Recipe("squeeze", (2, 3), lambda d, t: (
    {"dim": 1 + t.shape.index(1)} if 1 in t.shape else None),
    sample=lambda d: T((1, d(ints(1, 4))))))
add(Recipe("unsqueeze", (1, 2, 3), lambda d, t: {"dim": d(ints(1, len(t.shape) + 1))}))
add(Recipe("transpose", (2, 3), lambda d, t: {"dim0": 1, "dim1": d(ints(2, len(t.shape)))}))
add(Recipe("permute", (2, 3), lambda d, t: {
    "dims": (0, *d(st.permutations(range(1, len(t.shape) + 1))))}))


def reshape_args(d: Draw, t: T) -> dict:
    n = 1
    for s in t.shape:
        n *= s
    shape = d(st.sampled_from([(n,), (-1,), (1, n), (n, -1) if n > 1 else (1, -1)]))
    return {"shape": shape}


add(Recipe("reshape", (1, 2, 3), reshape_args))


def pad_args(d: Draw, t: T) -> dict:
    mode = d(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    last = t.shape[-1]
    pairs = 1 if len(t.shape) == 2 else 2
    if mode == "constant":
        pad = tuple(d(ints(-1 if last > 1 else 0, 2)) for _ in range(2 * pairs))
        return {"pad": pad, "mode": mode, "value": d(st.sampled_from([None, 0.5]))}
    limit = min(t.shape[-pairs:]) - 1 if mode == "reflect" else min(t.shape[-pairs:])
    pad = tuple(d(ints(0, min(limit, 2))) for _ in range(2 * pairs))
    return {"pad": pad, "mode": mode}


add(Recipe("pad", (2, 3), pad_args, sample=spatial_type(3, 2)))


def upsample_args(d: Draw, t: T) -> dict:
    n = len(t.shape) - 1
    modes = ["nearest", "nearest-exact", "area",
             {1: "linear", 2: d(st.sampled_from(["bilinear", "bicubic"])), 3: "trilinear"}[n]]
    mode = d(st.sampled_from(modes))
    args = {"mode": mode}
    if d(st.booleans()):
        args["size"] = d(ints(1, 5))
    else:
        args["scale_factor"] = d(st.sampled_from([2.0, 1.5, 0.5]))
        if args["scale_factor"] == 0.5 and min(t.shape[1:]) < 2:
            args["scale_factor"] = 2.0
    if mode in ("linear", "bilinear", "bicubic", "trilinear") and d(st.booleans()):
        args["align_corners"] = d(st.booleans())
    return args


add(Recipe("upsample", (2, 3, 4), upsample_args, sample=spatial_type(3, 2)))
add(Recipe("channel_shuffle", (3,),
           lambda d, t: {"groups": d(st.sampled_from(divisors(t.shape[0])))},
           sample=lambda d: T((d(st.sampled_from([2, 4, 6])), d(ints(1, 3)), d(ints(1, 3))))))



# ---- element-wise math, comparisons, where, casts, ranges and repeats ----------------------
# in their own module, which registers into RECIPES when imported (here, after everything above
# exists, so that it can import it)
from . import recipes_elementwise  # noqa: E402,F401
# the LLM kinds and sdpa (grouped-query, sliding window, bias) draw in their own module
from . import recipes_llm  # noqa: E402,F401
