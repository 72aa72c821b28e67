"""Layer families: a kind declared with `variant()` is a full layer kind, and the family base
states each rule once.

The registry-wide guarantees (generated code, the layer reference, `nnspec layers`) are proven by
tests/test_golden.py and tests/test_reference.py; these tests pin what `variant()` itself
promises, so a family that leans on it cannot lose a kind's name, doc or rule silently.
"""
from __future__ import annotations

import copy
import importlib
import pickle
from typing import ClassVar

import pytest

from nnspec.layers import REGISTRY, T
from nnspec.layers.base import REGISTRY as BASE_REGISTRY, Layer, ShapeError, check_lengths, variant


def test_a_variant_is_registered_with_its_name_doc_module_and_rules():
    cls = REGISTRY["maxpool3d"]
    assert cls.__name__ == cls.__qualname__ == "MaxPool3d"
    assert cls.__module__ == "nnspec.layers.pool"
    assert cls.__doc__ == "Max over sliding windows of [C, D, H, W]."
    assert (cls.kind, cls.torch_name, cls.functional, cls.dims) == (
        "maxpool3d", "nn.MaxPool3d", "F.max_pool3d", 3)
    # a rule it sets is a class variable, not a field a spec could pass
    assert "dims" not in cls.model_fields
    assert list(cls.model_fields) == ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]


@pytest.mark.parametrize("kind", ["maxpool2d", "batchnorm1d", "dropout3d", "conv_transpose2d",
                                  "lstm", "mean", "add", "softmax"])
def test_a_variant_is_the_module_attribute_of_its_name_and_pickles(kind):
    # pickle finds a class by module and name, as it found the classes these kinds were before
    cls = REGISTRY[kind]
    assert getattr(importlib.import_module(cls.__module__), cls.__name__) is cls
    layer = cls(**_required(kind))
    assert pickle.loads(pickle.dumps(layer)) == layer
    assert copy.deepcopy(layer) == layer


def _required(kind: str) -> dict:
    return {"maxpool2d": {"kernel_size": 2}, "conv_transpose2d": {"out_channels": 4,
            "kernel_size": 3}, "lstm": {"hidden_size": 8}, "mean": {"dim": 1}}.get(kind, {})


def test_variant_refuses_a_rule_its_base_does_not_declare():
    class _Family(Layer):
        width: ClassVar[int] = 1

    with pytest.raises(AssertionError, match="no class variable"):
        variant(_Family, "test_family_bad", "nn.Identity", "Doc.", depth=2)
    assert "test_family_bad" not in BASE_REGISTRY


def test_variant_kinds_differ_only_in_their_rules():
    one, three = REGISTRY["batchnorm1d"], REGISTRY["batchnorm3d"]
    assert one.ranks == (1, 2) and three.ranks == (4,)
    assert one.model_fields.keys() == three.model_fields.keys()
    with pytest.raises(ShapeError, match="batchnorm3d expects a 5-d input"):
        three().infer([T((4, 8))])
    assert one().infer([T((4, 8))]) == T((4, 8))


def test_per_dim_lengths_are_checked_the_same_way_for_conv_and_pool():
    for kind in ("conv2d", "maxpool2d"):
        args = {"kernel_size": (3, 3, 3)} | ({"out_channels": 4} if kind == "conv2d" else {})
        layer = REGISTRY[kind](**args)
        with pytest.raises(ShapeError, match=f"^{kind}: kernel_size has 3 values, expected 2$"):
            layer.infer([T((3, 8, 8))])
    # a per-dim argument the kind does not have (avg pools have no dilation) is skipped
    check_lengths(REGISTRY["avgpool2d"](kernel_size=2), 2, ("kernel_size", "dilation"))


def test_avgpool3d_alone_refuses_a_window_larger_than_its_input():
    small = [T((1, 2, 2, 2))]
    with pytest.raises(ShapeError, match="smaller than the window"):
        REGISTRY["avgpool3d"](kernel_size=3, padding=1).infer(small)
    assert REGISTRY["maxpool3d"](kernel_size=3, padding=1).infer(small) == T((1, 1, 1, 1))
