"""Dropout and friends: random zeroing while training, identity in eval. Always modules, so that
`model.eval()` turns them off."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from nnspec.layers.base import Layer, expect_rank, py, register, variant


class _Random(Layer):
    category: ClassVar[str] = "dropout"
    rank: ClassVar[int] = 0  # required per-sample rank; 0 = any
    p: float = Field(default=0.5, description="probability of zeroing an element, 0 <= p < 1")

    @field_validator("p")
    @classmethod
    def _p_in_range(cls, p: float) -> float:
        if p == 1:
            raise ValueError("p=1 would drop everything (the output would be all zeros); "
                             "use 0 <= p < 1")
        if not 0 <= p < 1:
            raise ValueError(f"p is a probability: 0 <= p < 1, got {p}")
        return p

    def infer(self, ins):
        if self.rank:
            expect_rank(ins[0], self.rank, self.kind)
        return ins[0]


class _Dropout(_Random):
    inplace: bool = Field(default=False, description="zero the input tensor in place")

    def init_source(self, ins):
        return f"{self.torch_name}({self.kwargs_source(['p', 'inplace'])})"


Dropout = variant(_Dropout, "dropout", "nn.Dropout", "Zero each element with probability p while "
                  "training, scaling the rest by 1/(1-p).")
Dropout1d = variant(_Dropout, "dropout1d", "nn.Dropout1d",
                    "Zero whole channels of [C, L] with probability p while training.", rank=2)
Dropout2d = variant(_Dropout, "dropout2d", "nn.Dropout2d",
                    "Zero whole channels of [C, H, W] with probability p while training.", rank=3)
Dropout3d = variant(_Dropout, "dropout3d", "nn.Dropout3d",
                    "Zero whole channels of [C, D, H, W] with probability p while training.", rank=4)
AlphaDropout = variant(_Dropout, "alpha_dropout", "nn.AlphaDropout",
                       "Dropout that keeps SELU's self-normalizing mean and variance.")


@register
class StochasticDepth(_Random):
    """Drop a whole residual branch with probability p while training (torchvision.ops)."""

    kind: ClassVar[str] = "stochastic_depth"
    torch_name: ClassVar[str] = "StochasticDepth"
    prelude: ClassVar[tuple[str, ...]] = ("StochasticDepth",)
    p: float = Field(description="probability of dropping the branch, 0 <= p < 1")
    mode: Literal["row", "batch"] = Field(default="row", description="'row': per sample; "
                                          "'batch': one draw for the whole batch")

    def init_source(self, ins):
        mode = "" if self.mode == "row" else f", mode={py(self.mode)}"
        return f"StochasticDepth({py(self.p)}{mode})"
