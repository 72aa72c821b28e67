"""`nnspec.register_layer`: a layer kind added from Python before a spec is loaded, here one made
of torch modules only (so its generated code needs no import), and the mistakes it refuses."""
from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from pydantic import Field, PositiveInt

import nnspec
from nnspec.cli import main
from nnspec.layers import REGISTRY, Layer, PluginError, T, py


class FeedForward(Layer):
    """A transformer's feed-forward block: linear, GELU, linear back to the input width."""

    kind: ClassVar[str] = "feed_forward"
    category: ClassVar[str] = "transformer"
    hidden: PositiveInt = Field(description="width of the hidden layer")

    def infer(self, ins):
        return T(ins[0].shape)

    def params(self, ins):
        width = ins[0].shape[-1]
        return {"0.weight": (self.hidden, width), "0.bias": (self.hidden,),
                "2.weight": (width, self.hidden), "2.bias": (width,)}

    def flops(self, ins, outs):
        return 2 * 2 * ins[0].shape[-1] * self.hidden

    def init_source(self, ins):
        width, hidden = py(ins[0].shape[-1]), py(self.hidden)
        return (f"nn.Sequential(nn.Linear({width}, {hidden}), nn.GELU(), "
                f"nn.Linear({hidden}, {width}))")


@pytest.fixture
def registered():
    REGISTRY.forget_plugins()
    nnspec.register_layer(FeedForward)
    yield
    REGISTRY.forget_plugins()


def test_a_kind_registered_from_python_is_used_by_a_spec(registered, capsys):
    spec = nnspec.loads("model m {\n  input x: float[8]\n  ffn: feed_forward(32)\n}\n")
    assert spec.summary()["params"] == 8 * 32 + 32 + 32 * 8 + 8
    model = spec.build().eval()
    x = torch.randn(3, 8)
    first, last = model.ffn[0], model.ffn[2]
    want = torch.nn.functional.gelu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(model(x), want)
    assert "\nimport " not in spec.source.split("import torch.nn as nn\n")[1]
    assert main(["layers", "feed_forward"]) == 0
    assert ("From nnspec.register_layer in module tests.plugins.test_register_layer."
            in capsys.readouterr().out)


class Clash(Layer):
    kind: ClassVar[str] = "linear"


class ImportsOs(Layer):
    kind: ClassVar[str] = "imports_os"
    imports: ClassVar[tuple[str, ...]] = ("os",)


class ImportsDunder(Layer):
    kind: ClassVar[str] = "imports_dunder"
    imports: ClassVar[tuple[str, ...]] = ("tests.__builtins__",)


class NoKind(Layer):
    pass


@pytest.mark.parametrize("cls, message", [
    (Clash, "nnspec.register_layer(Clash): layer kind `linear` is already built into nnspec; "
            "give the plugin's kind another name"),
    (FeedForward, "nnspec.register_layer(FeedForward): layer kind `feed_forward` is already "
                  "registered (from nnspec.register_layer in module "
                  "tests.plugins.test_register_layer)"),
    (ImportsOs, "`imports` entry 'os' of kind `imports_os` is not a module of its own package "
                "`tests`; generated code may import only the plugin's own modules"),
    (ImportsDunder, "'tests.__builtins__' of kind `imports_dunder` is not a module"),
    (NoKind, "nnspec.register_layer(NoKind): its `kind` '' is not a name a spec can write"),
    (dict, "nnspec.register_layer(dict): <class 'dict'> is not a subclass of "
           "nnspec.layers.Layer"),
], ids=["builtin-name", "twice", "foreign-import", "dunder-import", "no-kind", "not-a-layer"])
def test_register_layer_refuses(registered, cls, message):
    with pytest.raises(PluginError) as err:
        nnspec.register_layer(cls)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert REGISTRY["linear"].__module__ == "nnspec.layers.linear"
    assert "imports_os" not in REGISTRY
