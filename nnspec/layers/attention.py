"""Attention: multi-head attention, scaled dot-product attention over named q/k/v, and torch.nn's
transformer encoder and decoder layers.

Optional tensor inputs (key, value, masks) reach the generated call by keyword. The emitter gives
a tensor passed by keyword in the spec as the arg `name=expr` (after the positional ones, with
`ins` aligned); a positional arg is bound by its type, as each kind's `inputs` comment says.
infer, params and flops see only types, so they always bind by type; call_source binds keyword
args by name and raises ShapeError in the rare case where that gives different types (e.g.
multihead_attention's `value=` without `key=`, with shapes that differ).

FLOPs: the attention matmuls count 2*T*S*Dk + 2*T*S*Dv per sample, flop_counter's formula for
scaled dot-product attention. On CPU, F.scaled_dot_product_attention runs as
aten._scaled_dot_product_flash_attention_for_cpu, which flop_counter has no formula for, so it
sees only the projections there (`flops_unseen_on_cpu` says how much it misses); on CUDA it counts
the same total as nnspec.
"""
from __future__ import annotations

import re
from typing import ClassVar, Literal, Optional

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, T, fmt_shape, py, register
from nnspec.layers.tensor import FunctionalOnly

MASK_DTYPES = ("bool", "long", "float")
_BATCH_FIRST = "always true: nnspec tensors lead with the batch"


def _sequence(kind: str, t: T, what: str) -> tuple[int, int]:
    if len(t.shape) != 2:
        raise ShapeError(f"{kind}: {what} must be a sequence [B, T, D], got {fmt_shape(t.shape)}")
    if t.dtype != "float":
        raise ShapeError(f"{kind}: {what} must be float, got {t.dtype} {fmt_shape(t.shape)}")
    return t.shape


def _mask(kind: str, m: T, length: int, what: str, keys: str) -> None:
    if len(m.shape) != 1 or m.shape[0] != length or m.dtype not in MASK_DTYPES:
        raise ShapeError(f"{kind}: {what} must be [B, {length}] (one flag per {keys}), got "
                         f"{fmt_shape(m.shape)}" + ("" if m.dtype == "float" else f" {m.dtype}"))


def _heads(kind: str, width: int, heads: int, shape: tuple[int, ...], what: str = "heads") -> None:
    if width % heads:
        raise ShapeError(f"{kind}: the width {width} of {fmt_shape(shape)} is not divisible by "
                         f"{what}={heads}", f"each head gets width / {what} features")


_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(?!=)(.*)", re.S)


def split_args(args: list[str]) -> list[tuple[str | None, str]]:
    """(name, expression) per call arg: `name=expr` for a tensor given by keyword, else None."""
    out = []
    for a in args:
        m = _KEYWORD.fullmatch(a)
        out.append((m.group(1), m.group(2)) if m else (None, a))
    return out


def _call_roles(kind: str, args: list[str], by_type: list[str]) -> list[tuple[str, str]]:
    """(role, expression) per arg: keyword args by their name, positional ones by type."""
    out = []
    for (name, expr), role in zip(split_args(args), by_type):
        out.append((name or role, expr))
    roles = [r for r, _ in out]
    for r in roles:
        if roles.count(r) > 1:
            raise ShapeError(f"{kind}: tensor `{r}` given twice")
    return out


def _attention_params(prefix: str, e: int, bias: bool, kdim: int | None = None,
                      vdim: int | None = None) -> dict:
    kdim, vdim = kdim or e, vdim or e
    if kdim == e and vdim == e:
        p = {f"{prefix}in_proj_weight": (3 * e, e)}
    else:
        p = {f"{prefix}q_proj_weight": (e, e), f"{prefix}k_proj_weight": (e, kdim),
             f"{prefix}v_proj_weight": (e, vdim)}
    if bias:
        p[f"{prefix}in_proj_bias"] = (3 * e,)
    p[f"{prefix}out_proj.weight"] = (e, e)
    if bias:
        p[f"{prefix}out_proj.bias"] = (e,)
    return p


def _attention_flops(t: int, s: int, e: int, kdim: int, vdim: int) -> int:
    # q, k, v and output projections, then the attention matmuls (module docstring)
    return _projection_flops(t, s, e, kdim, vdim) + _sdpa_flops(t, s, e, e)


def _projection_flops(t: int, s: int, e: int, kdim: int, vdim: int) -> int:
    return 2 * t * e * e + 2 * s * e * kdim + 2 * s * e * vdim + 2 * t * e * e


def _sdpa_flops(t: int, s: int, dk: int, dv: int) -> int:
    # torch.utils.flop_counter.sdpa_flop_count per sample: q @ k^T, then attn @ v
    return 2 * t * s * dk + 2 * t * s * dv


@register
class MultiheadAttention(Layer):
    """Multi-head attention, self or query/key/value; key_padding_mask [S] is True/1 at padding."""

    kind: ClassVar[str] = "multihead_attention"
    torch_name: ClassVar[str] = "nn.MultiheadAttention"
    category: ClassVar[str] = "attention"
    # by type: the first input is the query; a last input [S] (rank 1) is key_padding_mask
    # (True/nonzero = padding, torch's convention); other inputs are key, then value.
    inputs: ClassVar[tuple[str, ...]] = ("query", "key?", "value?", "key_padding_mask?")
    prelude: ClassVar[tuple[str, ...]] = ("MultiheadAttentionLayer",)
    num_heads: PositiveInt = Field(description="attention heads; embed_dim must divide by it")
    dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                           description="dropout on the attention weights (training only)")
    bias: bool = Field(default=True, description="biases on the input and output projections")
    causal: bool = Field(default=False, description="mask keys after each query position")
    batch_first: Literal[True] = Field(default=True, description=_BATCH_FIRST)

    def _roles(self, ins: list[T]) -> list[str]:
        if not 1 <= len(ins) <= 4:
            raise ShapeError(f"multihead_attention takes 1 to 4 tensors, got {len(ins)}")
        roles = ["query"]
        rest = ["key", "value"]
        for i, t in enumerate(ins[1:], 1):
            if i == len(ins) - 1 and len(t.shape) == 1:
                roles.append("key_padding_mask")
            elif rest:
                roles.append(rest.pop(0))
            else:
                raise ShapeError("multihead_attention: after query, key and value only a padding "
                                 f"mask [B, S] may follow, got {fmt_shape(t.shape)}")
        return roles

    @staticmethod
    def _resolve(given: dict) -> tuple:
        q = given["query"]
        k = given.get("key", q)
        return q, k, given.get("value", k), given.get("key_padding_mask")

    def _bind(self, ins: list[T]) -> tuple[T, T, T, Optional[T]]:
        return self._resolve(dict(zip(self._roles(ins), ins)))

    def infer(self, ins):
        q, k, v, mask = self._bind(ins)
        t, e = _sequence(self.kind, q, "the query")
        s, _ = _sequence(self.kind, k, "the key")
        sv, _ = _sequence(self.kind, v, "the value")
        _heads(self.kind, e, self.num_heads, q.shape, "num_heads")
        if s != sv:
            raise ShapeError(f"multihead_attention: key {fmt_shape(k.shape)} and value "
                             f"{fmt_shape(v.shape)} have different lengths")
        if mask is not None:
            _mask(self.kind, mask, s, "key_padding_mask", "key")
        return T((t, e))

    def params(self, ins):
        q, k, v, _ = self._bind(ins)
        return _attention_params("", q.shape[1], self.bias, k.shape[1], v.shape[1])

    def flops(self, ins, outs):
        q, k, v, _ = self._bind(ins)
        return _attention_flops(q.shape[0], k.shape[0], q.shape[1], k.shape[1], v.shape[1])

    def flops_unseen_on_cpu(self, ins, outs):
        q, k, _, _ = self._bind(ins)
        return _sdpa_flops(q.shape[0], k.shape[0], q.shape[1], q.shape[1])

    def init_source(self, ins):
        q, k, v, _ = self._bind(ins)
        e = q.shape[1]
        rest = self.kwargs_source(["causal", "dropout", "bias"])
        if (k.shape[1], v.shape[1]) != (e, e):
            rest += (", " if rest else "") + f"kdim={py(k.shape[1])}, vdim={py(v.shape[1])}"
        return f"MultiheadAttentionLayer({py(e)}, {py(self.num_heads)}{', ' + rest if rest else ''})"

    def call_source(self, module, args, ins):
        bound = _call_roles(self.kind, args, self._roles(ins))
        roles = [r for r, _ in bound]
        if "query" not in roles or any(r not in ("query", "key", "value", "key_padding_mask")
                                       for r in roles):
            raise ShapeError(f"multihead_attention: cannot bind tensors {', '.join(roles)}")
        if self._resolve(dict(zip(roles, ins))) != self._bind(ins):
            raise ShapeError(f"multihead_attention: tensors given as {', '.join(roles)} do not "
                             f"fit their shapes ({', '.join(fmt_shape(t.shape) for t in ins)})",
                             "give key= with value=; a padding mask is [B, S]")
        exprs = dict(bound)
        parts = [exprs["query"]] + [f"{r}={exprs[r]}" for r in ("key", "value", "key_padding_mask")
                                    if r in exprs]
        return f"{module}({', '.join(parts)})"


@register
class Sdpa(FunctionalOnly):
    """Attention over q [T, D], k, v [S, D] in heads; mask [S] (1 attend, 0 pad), bias [H, T, S]."""

    kind: ClassVar[str] = "sdpa"
    torch_name: ClassVar[str] = "F.scaled_dot_product_attention"
    category: ClassVar[str] = "attention"
    # mask: per sample [S], 1 = attend, 0 = padding (transformers' attention_mask); bias: per
    # sample [heads or 1, T, S], added to the scores (T5's relative position bias). By type, a
    # rank-1 tensor is the mask and a rank-3 one the bias.
    inputs: ClassVar[tuple[str, ...]] = ("q", "k", "v", "mask?", "bias?")
    heads: PositiveInt = Field(description="attention heads; D must divide by it")
    causal: bool = Field(default=False, description="mask keys after each query position")
    dropout: float = Field(default=0.0, ge=0.0, le=1.0,
                           description="dropout on the attention weights (training only)")
    scale: Optional[float] = Field(
        default=None, gt=0.0, description="score scale (default 1 / sqrt(D / heads))")
    kv_heads: Optional[PositiveInt] = Field(
        default=None, description="grouped-query attention: k and v hold this many heads of "
        "D / heads features, each shared by heads / kv_heads query heads (default: heads)")
    window: Optional[PositiveInt] = Field(
        default=None, description="sliding window: query i sees only keys j with i - j < window "
        "(Mistral's sliding_window)")

    def _extras(self, ins: list[T]) -> dict[str, T]:
        """The optional mask and bias, bound by rank (module comment)."""
        out: dict[str, T] = {}
        for t in ins[3:]:
            role = {1: "mask", 3: "bias"}.get(len(t.shape))
            if role is None or role in out:
                raise ShapeError(f"sdpa: after q, k and v come a mask [B, S] and a bias "
                                 f"[B, heads, T, S], got {fmt_shape(t.shape)}")
            out[role] = t
        return out

    def infer(self, ins):
        if not 3 <= len(ins) <= 5:
            raise ShapeError(f"sdpa takes q, k, v, an optional mask and bias, got {len(ins)} "
                             "tensors")
        q, k, v = ins[:3]
        t, d = _sequence(self.kind, q, "q")
        s, dk = _sequence(self.kind, k, "k")
        sv, dv = _sequence(self.kind, v, "v")
        _heads(self.kind, d, self.heads, q.shape)
        kv = self.kv_heads or self.heads
        if self.heads % kv:
            raise ShapeError(f"sdpa: kv_heads={kv} does not divide heads={self.heads}",
                             "each k/v head serves heads / kv_heads query heads")
        width = d // self.heads * kv
        if dk != width or dv != width:
            raise ShapeError(f"sdpa: k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)} must be "
                             f"{width} wide ({kv} heads of q's {d // self.heads} features, q "
                             f"{fmt_shape(q.shape)})", self._width_help(d, dk, dv))
        if sv != s:
            raise ShapeError(f"sdpa: k {fmt_shape(k.shape)} and v {fmt_shape(v.shape)} have "
                             f"different lengths")
        extras = self._extras(ins)
        if "mask" in extras:
            _mask(self.kind, extras["mask"], s, "mask", "key: 1 = attend, 0 = padding")
        bias = extras.get("bias")
        if bias is not None and (bias.dtype != "float" or bias.shape[0] not in (1, self.heads)
                                 or bias.shape[1:] != (t, s)):
            raise ShapeError(f"sdpa: bias must be float [B, {self.heads} or 1, {t}, {s}] (heads, "
                             f"queries, keys), got {bias}")
        return T((t, d))

    def bind_extras(self, args: list[str], ins: list[T]) -> list[tuple[str, str]]:
        """(role, expression) of the mask and bias args; a keyword must name its rank's role."""
        out = []
        for (name, expr), (role, t) in zip(split_args(args[3:]), self._extras(ins).items()):
            if name is not None and name != role:
                raise ShapeError(f"sdpa: {name}= is given {t}, which is a {role}'s shape",
                                 "mask is [B, S] (1 = attend), bias is [B, heads or 1, T, S]")
            out.append((role, expr))
        return out

    def _width_help(self, d: int, dk: int, dv: int) -> str:
        head = d // self.heads
        if dk == dv and dk % head == 0 and self.heads % (dk // head) == 0:
            return (f"for grouped-query attention give kv_heads={dk // head} (k and v hold "
                    f"{dk // head} heads of {head} features)")
        return ("project q, k and v to the same width, or k and v to a number of heads that "
                "divides heads and pass it as kv_heads=")

    def flops(self, ins, outs):
        # every query head attends: shared k/v heads count once per query head, as
        # flop_counter counts grouped-query attention (which it sees repeated)
        q, k, v = ins[:3]
        group = self.heads // (self.kv_heads or self.heads)
        return _sdpa_flops(q.shape[0], k.shape[0], k.shape[1] * group, v.shape[1] * group)

    def flops_unseen_on_cpu(self, ins, outs):
        return self.flops(ins, outs)

    def functional_source(self, args, ins):
        q, k, v = args[:3]
        split = [f"{a}.unflatten(-1, ({py(n)}, -1)).transpose(1, 2)"
                 for a, n in ((q, self.heads), (k, self.kv_heads or self.heads),
                              (v, self.kv_heads or self.heads))]
        extras = dict(self.bind_extras(args, ins))
        kw = []
        mask = self._attn_mask(q, k, extras)
        if mask is not None:
            kw.append(f"attn_mask={mask}")
        elif self.causal:
            kw.append("is_causal=True")
        if self.dropout:
            # functional code runs inside the generated module's forward: `self` is that module
            kw.append(f"dropout_p={py(self.dropout)} if self.training else 0.0")
        if self.scale is not None:
            kw.append(f"scale={py(self.scale)}")
        if self.kv_heads and self.kv_heads != self.heads:
            kw.append("enable_gqa=True")
        inner = ", ".join(split + kw)
        return f"F.scaled_dot_product_attention({inner}).transpose(1, 2).flatten(2)"

    def _attn_mask(self, q: str, k: str, extras: dict[str, str]) -> str | None:
        """The additive float mask: padding, plus the bias, then -inf at keys that causal or the
        window hide; None when is_causal alone says it all."""
        terms = []
        if "mask" in extras:
            # padding adds the dtype's min to the scores, as transformers' eager attention does;
            # causal then sets later keys to -inf, so even a row whose keys are all padding never
            # sees later positions
            keep = f"({extras['mask']}[:, None, None, :] != 0).to({q}.dtype)"
            terms.append(f"(1.0 - {keep}) * torch.finfo({q}.dtype).min")
        if "bias" in extras:
            terms.append(extras["bias"])
        hidden = []
        if self.causal:
            hidden.append("triu(1)")
        if self.window is not None:
            hidden.append(f"tril({py(-self.window)})")
        if not terms and not self.window:
            return None
        size = f"{q}.shape[1], {k}.shape[1]"
        mask = (" + ".join(terms) if terms
                else f"torch.zeros({size}, dtype={q}.dtype, device={q}.device)")
        if hidden:
            ones = f"torch.ones({size}, dtype=torch.bool, device={q}.device)"
            where = " | ".join(f"{ones}.{h}" for h in hidden)
            mask = f"({mask}).masked_fill({where}, -math.inf)"
        return mask


class _TransformerLayer(Layer):
    category: ClassVar[str] = "transformer"
    nhead: PositiveInt = Field(description="attention heads; d_model must divide by it")
    dim_feedforward: PositiveInt = Field(default=2048,
                                         description="width of the feed-forward layer")
    dropout: float = Field(default=0.1, ge=0.0, le=1.0, description="dropout (training only)")
    activation: Literal["relu", "gelu"] = Field(default="relu",
                                                description="feed-forward activation")
    norm_first: bool = Field(default=False,
                             description="LayerNorm before each block (pre-norm), not after")
    layer_norm_eps: float = Field(default=1e-5, gt=0.0, description="LayerNorm epsilon")
    bias: bool = Field(default=True, description="biases in the linear layers and LayerNorms")
    causal: bool = Field(default=False, description="mask later positions in the self-attention")
    batch_first: Literal[True] = Field(default=True, description=_BATCH_FIRST)

    def _ffn_params(self, e: int) -> dict:
        f = self.dim_feedforward
        p = {"linear1.weight": (f, e), "linear1.bias": (f,), "linear2.weight": (e, f),
             "linear2.bias": (e,)}
        return p if self.bias else {n: s for n, s in p.items() if not n.endswith("bias")}

    def _norm_params(self, e: int, count: int) -> dict:
        p = {}
        for i in range(1, count + 1):
            p[f"norm{i}.weight"] = (e,)
            if self.bias:
                p[f"norm{i}.bias"] = (e,)
        return p

    def _init(self, helper: str, e: int) -> str:
        rest = self.kwargs_source(["dim_feedforward", "dropout", "activation", "layer_norm_eps",
                                   "norm_first", "bias", "causal"])
        return f"{helper}({py(e)}, {py(self.nhead)}{', ' + rest if rest else ''})"


@register
class TransformerEncoderLayer(_TransformerLayer):
    """Transformer encoder layer over [T, d_model]; src_key_padding_mask [T] is True at padding."""

    # an optional src_key_padding_mask [T] is True/nonzero at padding

    kind: ClassVar[str] = "transformer_encoder_layer"
    torch_name: ClassVar[str] = "nn.TransformerEncoderLayer"
    inputs: ClassVar[tuple[str, ...]] = ("x", "src_key_padding_mask?")
    prelude: ClassVar[tuple[str, ...]] = ("TransformerEncoderBlock",)

    def infer(self, ins):
        if len(ins) not in (1, 2):
            raise ShapeError(f"{self.kind} takes x and an optional padding mask, got {len(ins)} "
                             "tensors")
        t, e = _sequence(self.kind, ins[0], "x")
        _heads(self.kind, e, self.nhead, ins[0].shape, "nhead")
        if len(ins) == 2:
            _mask(self.kind, ins[1], t, "src_key_padding_mask", "position")
        return ins[0]

    def params(self, ins):
        e = ins[0].shape[1]
        return {**_attention_params("self_attn.", e, self.bias), **self._ffn_params(e),
                **self._norm_params(e, 2)}

    def flops(self, ins, outs):
        t, e = ins[0].shape
        return _attention_flops(t, t, e, e, e) + 4 * t * e * self.dim_feedforward

    def flops_unseen_on_cpu(self, ins, outs):
        t, e = ins[0].shape
        return _sdpa_flops(t, t, e, e)

    def init_source(self, ins):
        return self._init("TransformerEncoderBlock", ins[0].shape[1])

    def call_source(self, module, args, ins):
        bound = _call_roles(self.kind, args, ["x", "src_key_padding_mask"][: len(args)])
        if [r for r, _ in bound] != ["x", "src_key_padding_mask"][: len(args)]:
            raise ShapeError(f"{self.kind}: cannot bind tensors {', '.join(r for r, _ in bound)}")
        return f"{module}({', '.join(e if r == 'x' else f'{r}={e}' for r, e in bound)})"


@register
class TransformerDecoderLayer(_TransformerLayer):
    """Transformer decoder layer over x [T, D] and memory [S, D]; masks are True at padding."""

    # self-attention over x (causal: not to later positions), cross-attention to memory,
    # feed-forward; padding masks are True/nonzero at padding (torch's convention)

    kind: ClassVar[str] = "transformer_decoder_layer"
    torch_name: ClassVar[str] = "nn.TransformerDecoderLayer"
    # by type: masks are tgt's then memory's, unless their lengths say otherwise (S, not T, for
    # the first one)
    inputs: ClassVar[tuple[str, ...]] = ("x", "memory", "tgt_key_padding_mask?",
                                         "memory_key_padding_mask?")
    prelude: ClassVar[tuple[str, ...]] = ("TransformerDecoderBlock",)

    def _roles(self, ins: list[T]) -> list[str]:
        if not 2 <= len(ins) <= 4:
            raise ShapeError(f"{self.kind} takes x, memory and up to two padding masks, got "
                             f"{len(ins)} tensors")
        tgt, mem = "tgt_key_padding_mask", "memory_key_padding_mask"
        t, s = ins[0].shape[:1], ins[1].shape[:1]
        masks = [m.shape for m in ins[2:]]
        memory_only = [m == s and m != t for m in masks]
        if memory_only[:1] == [True] and (len(masks) == 1 or masks[1] == t != s):
            return ["x", "memory", mem, tgt][: len(ins)]
        return ["x", "memory", tgt, mem][: len(ins)]

    def _check(self, ins: list[T], roles: list[str]) -> tuple[int, int, int]:
        t, e = _sequence(self.kind, ins[0], "x")
        s, em = _sequence(self.kind, ins[1], "memory")
        if em != e:
            raise ShapeError(f"{self.kind}: memory {fmt_shape(ins[1].shape)} must have x's width "
                             f"{e} ({fmt_shape(ins[0].shape)})", "project the memory first")
        for role, m in zip(roles[2:], ins[2:]):
            if role == "tgt_key_padding_mask":
                _mask(self.kind, m, t, role, "position of x")
            elif role == "memory_key_padding_mask":
                _mask(self.kind, m, s, role, "memory position")
            else:
                raise ShapeError(f"{self.kind}: no input named {role}")
        return t, s, e

    def infer(self, ins):
        t, s, e = self._check(ins, self._roles(ins))
        _heads(self.kind, e, self.nhead, ins[0].shape, "nhead")
        return ins[0]

    def params(self, ins):
        e = ins[0].shape[1]
        return {**_attention_params("self_attn.", e, self.bias),
                **_attention_params("multihead_attn.", e, self.bias), **self._ffn_params(e),
                **self._norm_params(e, 3)}

    def flops(self, ins, outs):
        (t, e), s = ins[0].shape, ins[1].shape[0]
        return (_attention_flops(t, t, e, e, e) + _attention_flops(t, s, e, e, e)
                + 4 * t * e * self.dim_feedforward)

    def flops_unseen_on_cpu(self, ins, outs):
        (t, e), s = ins[0].shape, ins[1].shape[0]
        return _sdpa_flops(t, t, e, e) + _sdpa_flops(t, s, e, e)

    def init_source(self, ins):
        return self._init("TransformerDecoderBlock", ins[0].shape[1])

    def call_source(self, module, args, ins):
        bound = _call_roles(self.kind, args, self._roles(ins))
        roles = [r for r, _ in bound]
        if roles[:2] != ["x", "memory"]:
            raise ShapeError(f"{self.kind}: cannot bind tensors {', '.join(roles)}")
        self._check(ins, roles)
        parts = [e for _, e in bound[:2]] + [f"{r}={e}" for r, e in bound[2:]]
        return f"{module}({', '.join(parts)})"
