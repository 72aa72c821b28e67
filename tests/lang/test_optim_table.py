"""The optimizer table that `nnspec check` validates against equals what the installed torch and
deepspeed say, so an upgrade that adds, renames or re-defaults a parameter fails here (regenerate
with `python scripts/optim_table.py`); and the values it refuses are the ones torch refuses."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from nnspec.lang.config import REFUSED_OPTIMIZERS, Call, TrainSpec, check_train
from nnspec.lang.config.optim_table import DEEPSPEED_SCHEDULERS, TORCH_OPTIMIZERS
from nnspec.lang.config.optim_values import optimizer_class_name, value_problems

from ..conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("optim_table_script",
                                                  ROOT / "scripts" / "optim_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_matches_installed_torch():
    assert TORCH_OPTIMIZERS == _script().torch_optimizers()


def test_table_matches_installed_deepspeed():
    pytest.importorskip("deepspeed")
    assert DEEPSPEED_SCHEDULERS == _script().deepspeed_schedulers()


def test_check_flag_reports_a_stale_table(monkeypatch, capsys):
    script = _script()
    assert script.main(["--check"]) == 0
    monkeypatch.setattr(script, "torch_optimizers",
                        lambda: {**TORCH_OPTIMIZERS, "Lion": (("params", "X", ...),)})
    assert script.main(["--check"]) == 1
    assert "out of date for Lion" in capsys.readouterr().err


def test_names_are_case_insensitive():
    assert optimizer_class_name("adamw") == "AdamW" and optimizer_class_name("RMSPROP") == "RMSprop"
    assert optimizer_class_name("adamx") is None


# (class, arguments): one value per range torch's __init__ enforces, and the flag combinations
# it refuses. Each must be refused by check exactly when torch refuses it.
VALUES = [
    ("AdamW", {"lr": -1.0}), ("AdamW", {"lr": 0.0}), ("Adam", {"eps": -1e-8}),
    ("Adam", {"betas": (0.9, 1.0)}), ("Adam", {"betas": (-0.1, 0.9)}),
    ("NAdam", {"betas": (0.5, 0.5)}),
    ("Adamax", {"weight_decay": -0.1}), ("RAdam", {"weight_decay": 0.1}),
    ("SGD", {"momentum": -0.9}), ("SGD", {"lr": 0.1, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("Adagrad", {"lr_decay": -1}), ("Adagrad", {"initial_accumulator_value": -1}),
    ("RMSprop", {"alpha": -0.5}), ("RMSprop", {"momentum": 0.9}), ("NAdam", {"momentum_decay": -1}),
    ("Adadelta", {"rho": 1.5}), ("Adadelta", {"rho": 1.0}), ("Rprop", {"etas": (0.5, 0.9)}),
    ("Rprop", {"etas": (0.5, 1.2)}), ("Adafactor", {"beta2_decay": 0.5}), ("Adafactor", {"d": 0.5}),
    ("Adafactor", {"eps": (None, -1.0)}), ("Adafactor", {"eps": (None, 1e-3)}),
    ("Adam", {"fused": True, "foreach": True}), ("Adam", {"fused": True, "differentiable": True}),
    ("SGD", {"fused": True}),
]


@pytest.mark.parametrize("cls,kwargs", VALUES, ids=lambda v: str(v))
def test_refused_exactly_when_torch_refuses(cls, kwargs):
    try:
        getattr(torch.optim, cls)([torch.nn.Parameter(torch.zeros(2))], **kwargs)
        torch_refuses = False
    except (ValueError, TypeError, RuntimeError):
        torch_refuses = True
    assert bool(value_problems(cls, kwargs)) == torch_refuses


@pytest.mark.parametrize("value", ["fast", True, (0.9,), [0.9, "x"]])
def test_wrong_types_are_refused_with_the_default_shown(value):
    problems = check_train(TrainSpec(optimizer=Call(name="adam", kwargs={"betas": value})))
    assert [p.message for p in problems] == [
        f"optimizer adam: betas must be 2 numbers, like the default (0.9, 0.999), got {value!r}"]
    assert problems[0].help == "Adam's default is betas=(0.9, 0.999)"


def test_unknown_names_suggest_usable_optimizers_only():
    problems = check_train(TrainSpec(optimizer=Call(name="sparse_adam")))
    assert problems[0].message == "unknown optimizer `sparse_adam`"
    assert "sparseadam" not in problems[0].help
    assert all(optimizer_class_name(name) for name in REFUSED_OPTIMIZERS)  # torch's own names


def test_every_argument_has_a_type_rule():
    """Each argument of a usable optimizer gets its type from its default; a new kind of default
    in a torch upgrade (None other than foreach/fused, a string) needs a rule of its own."""
    from nnspec.lang.config.optim_values import _type_rule

    unruled = [(cls, name) for cls, params in TORCH_OPTIMIZERS.items()
               if cls.lower() not in REFUSED_OPTIMIZERS
               for name, _, default in params
               if name != "params" and _type_rule(name, default) is None]
    assert unruled == []
