"""Vision-specific layers: ShuffleNet's channel shuffle."""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, fmt_shape, py, register


@register
class ChannelShuffle(Layer):
    """ShuffleNet's channel shuffle: interleave the channels of `groups` groups."""

    kind: ClassVar[str] = "channel_shuffle"
    torch_name: ClassVar[str] = "nn.ChannelShuffle"
    category: ClassVar[str] = "vision"
    groups: PositiveInt = Field(description="number of channel groups; must divide the channels")

    def infer(self, ins):
        (x,) = ins
        if len(x.shape) < 2:
            raise ShapeError(f"channel_shuffle expects [C, ...spatial] with at least one spatial "
                             f"dim, got {fmt_shape(x.shape)}")
        if x.shape[0] % self.groups:
            raise ShapeError(f"channel_shuffle: groups={self.groups} does not divide the "
                             f"{x.shape[0]} channels of {fmt_shape(x.shape)}")
        return x

    def init_source(self, ins):
        return f"nn.ChannelShuffle({py(self.groups)})"

    def functional_source(self, args, ins):
        return f"F.channel_shuffle({args[0]}, {py(self.groups)})"
