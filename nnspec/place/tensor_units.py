"""Layer kinds that hold a whole attention (and feed-forward) inside one module, as torch's
nn.MultiheadAttention and nn.TransformerEncoderLayer do: each splits by itself, the Megatron
way, inside the module (column-parallel in_proj section by section, row-parallel out_proj, and
linear1/linear2 as an MLP), with one all-reduce after each row-parallel part. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass, field

from nnspec.layers.base import Layer, T, numel


@dataclass
class Unit:
    """How one such module splits, by paths relative to it ("" is the module itself)."""

    splits: dict[str, str] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    sections: dict[str, tuple[int, ...]] = field(default_factory=dict)
    split_params: int = 0
    allreduces: int = 0             # forward (and as many backward), each of the input's size


# kind -> (its attention submodules, relative paths, "" for the module itself; has an MLP)
ATTENTION_UNITS = {
    "multihead_attention": (("",), False),
    "transformer_encoder_layer": (("self_attn",), True),
    "transformer_decoder_layer": (("self_attn", "multihead_attn"), True),
}

_SPLIT_PARAMS = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "linear1.weight",
                 "linear1.bias", "linear2.weight")


def attention_unit(layer: Layer, ins: list[T], n: int) -> Unit | str:
    """The split of one attention module for tensor = n, or why it stays whole."""
    kind = layer.kind
    heads = getattr(layer, "num_heads", None) or getattr(layer, "nhead")
    width = ins[0].shape[-1]
    params = layer.params(ins)
    if any(name.endswith(("q_proj_weight", "k_proj_weight")) for name in params):
        return f"{kind}: keys and values of another width than the query are not split"
    if heads % n:
        return f"{kind}: {heads} heads do not divide by tensor = {n}"
    attentions, has_mlp = ATTENTION_UNITS[kind]
    unit = Unit()
    for att in attentions:
        prefix = f"{att}." if att else ""
        unit.splits[att] = "column"
        unit.splits[f"{prefix}out_proj"] = "row"
        unit.heads[att] = heads // n
        unit.sections[att] = (width, width, width)
    if has_mlp:
        ffn = layer.dim_feedforward  # type: ignore[attr-defined]
        if ffn % n:
            return f"{kind}: dim_feedforward {ffn} does not divide by tensor = {n}"
        unit.splits["linear1"], unit.splits["linear2"] = "column", "row"
    unit.split_params = sum(numel(shape) for name, shape in params.items()
                            if name.endswith(_SPLIT_PARAMS))
    unit.allreduces = len(attentions) + has_mlp
    return unit
