"""Layers of large language models that torch.nn has no class for: rotary position embeddings.

The rest of a Llama-style decoder is written with existing kinds (see the README): RMSNorm is
`rmsnorm(eps=...)` (nn.RMSNorm, the same float32 math as transformers' LlamaRMSNorm), SwiGLU is
`(x -> gate_proj: linear(I, bias=false) -> act_fn: silu) * (x -> up_proj: linear(I, bias=false))
-> down_proj: linear(D, bias=false)`, grouped-query, sliding-window and biased attention are
`sdpa(..., kv_heads=, window=, bias=)` (or `kv_attention`, the same as a module that can cache
k and v for generation), and q/k/v biases are linear's `bias`.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from nnspec.layers.attention import Sdpa
from nnspec.layers.base import Layer, ShapeError, T, fmt_shape, py, register

ROPE_SCALINGS = ("default", "linear", "dynamic", "llama3")


@register
class Rotary(Layer):
    """Rotary position embedding (RoPE) of q or k [T, heads * head_dim] as transformers does."""

    kind: ClassVar[str] = "rotary"
    torch_name: ClassVar[str] = "transformers' apply_rotary_pos_emb"
    category: ClassVar[str] = "attention"
    prelude: ClassVar[tuple[str, ...]] = ("RotaryEmbedding",)
    head_dim: PositiveInt = Field(description="features per head (even); the width must divide "
                                  "by it, so q and k with different head counts share the value")
    theta: float = Field(default=10000.0, gt=1.0, description="the base wavelength (rope_theta)")
    scaling: Literal[ROPE_SCALINGS] = Field(  # type: ignore[valid-type]
        default="default", description="rope_type: default, linear (positions / factor), dynamic "
        "(NTK: a larger base past original_max_position_embeddings) or llama3 (Llama 3.1)")
    factor: float = Field(default=1.0, gt=0.0, description="the scaling factor (linear, dynamic, "
                          "llama3)")
    original_max_position_embeddings: PositiveInt = Field(
        default=8192, description="the trained context length (llama3; dynamic: transformers' "
        "max_position_embeddings)")
    low_freq_factor: float = Field(default=1.0, gt=0.0, description="llama3: wavelengths above "
                                   "original / low_freq_factor are divided by factor")
    high_freq_factor: float = Field(default=4.0, gt=0.0, description="llama3: wavelengths below "
                                    "original / high_freq_factor stay as they are")

    @model_validator(mode="after")
    def _valid(self):
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even: rotary turns feature pairs")
        if self.scaling == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("llama3 scaling needs high_freq_factor > low_freq_factor")
        if self.scaling == "dynamic" and self.head_dim < 4:
            raise ValueError("dynamic scaling needs head_dim >= 4 (its exponent is d / (d - 2))")
        return self

    def infer(self, ins):
        (x,) = ins
        if len(x.shape) != 2:
            raise ShapeError(f"rotary expects q or k as a sequence [B, T, D], got "
                             f"{fmt_shape(x.shape)}", "apply it to the projected q or k")
        if x.shape[1] % self.head_dim:
            raise ShapeError(f"rotary: the width {x.shape[1]} of {fmt_shape(x.shape)} is not a "
                             f"multiple of head_dim={self.head_dim}",
                             "head_dim is the width of one head: D / heads")
        return x

    def init_source(self, ins):
        rest = self.kwargs_source(["theta", "scaling", "factor",
                                   "original_max_position_embeddings", "low_freq_factor",
                                   "high_freq_factor"])
        return f"RotaryEmbedding({py(self.head_dim)}{', ' + rest if rest else ''})"


@register
class KVAttention(Sdpa):
    """sdpa as a module that can cache k and v for generation (nnspec.generate, use_cache)."""

    kind: ClassVar[str] = "kv_attention"
    torch_name: ClassVar[str] = "F.scaled_dot_product_attention"
    functional_only: ClassVar[bool] = False
    prelude: ClassVar[tuple[str, ...]] = ("KVCacheAttention",)

    def functional_source(self, args, ins):
        return None

    def init_source(self, ins):
        rest = self.kwargs_source(["kv_heads", "causal", "window", "scale", "dropout"])
        return f"KVCacheAttention({py(self.heads)}{', ' + rest if rest else ''})"

    def call_source(self, module, args, ins):
        # extras bind by rank (sdpa's rule), and reach the module by name
        extras = [f"{role}={expr}" for role, expr in self.bind_extras(args, ins)]
        return f"{module}({', '.join(list(args[:3]) + extras)})"
