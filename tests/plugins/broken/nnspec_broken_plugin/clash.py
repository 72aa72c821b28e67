"""Kinds nnspec must refuse, each with a one-line error, beside one it accepts."""
from typing import ClassVar

import nnspec
from nnspec.layers import Layer

HELPER = {"not": "a layer kind"}


@nnspec.register_layer
class MyLinear(Layer):
    """Takes a name that nnspec already has."""

    kind: ClassVar[str] = "linear"


@nnspec.register_layer
class Sneaky(Layer):
    """Would make generated code import a module of another package."""

    kind: ClassVar[str] = "sneaky"
    imports: ClassVar[tuple[str, ...]] = ("os",)


class PassThrough(Layer):
    """Passes its input on; registered by the entry point that names the class."""

    kind: ClassVar[str] = "pass_through"

    def init_source(self, ins):
        return "nn.Identity()"
