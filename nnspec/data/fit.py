"""How data must fit a model, as `nnspec train` loads it and `nnspec check` foresees it.

The rules here are shared: train's loaders (nnspec.train.data) apply them to the arrays they
load, and check (nnspec.data.check) to the facts nnspec.data.meta reads without loading, so the two
refuse the same data in the same words. A rule returns a `DataProblem` (message, hint, code) or
None; nothing here reads files or imports torch.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from nnspec.lang.config import Call

# where a problem is reported: the data itself, its fit to the model's inputs, to its output
CANNOT_READ, NOT_INPUT, NOT_OUTPUT = "E0731", "E0732", "E0733"


class DataProblem(Exception):
    """Data that train would refuse: what is wrong, how to fix it, and its diagnostic code."""

    def __init__(self, message: str, hint: Optional[str] = None, code: str = CANNOT_READ):
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


@dataclass(frozen=True)
class Port:
    """A model input or output as `Spec.summary()` describes it (shape without the batch)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass
class Labels:
    """What is known of the targets; None where it would take reading them all."""

    shape: Optional[tuple[int, ...]] = ()      # per sample
    integral: Optional[bool] = True            # every value a whole number
    low: Optional[float] = None
    high: Optional[float] = None


@dataclass
class Meta:
    """A data set's facts: per-sample shape of each input array ("" for the only one), whether
    its values are known to be fractional, the number of samples, and the labels."""

    inputs: dict[str, tuple[int, ...]]
    labels: Labels = field(default_factory=Labels)
    fractional: bool = False                   # some input value is not a whole number
    finite: Optional[bool] = True              # no NaN or infinite input values
    samples: Optional[int] = None
    split_by_loader: bool = False              # text() splits by position, not by samples


@dataclass
class Want:
    """What the model and the train section ask of the data."""

    inputs: list[Port]
    output: Port
    target: Optional[str]       # "class", "binary", "value"; None when the loss is unknown
    split: float
    base: Path
    what: str = ""

    def only_input(self) -> Port:
        if len(self.inputs) != 1:
            names = ", ".join(p.name for p in self.inputs)
            raise DataProblem(f"{self.what} gives one input per sample, but the model has "
                              f"{len(self.inputs)} ({names})", "use npz(path) or pt(path) with "
                              "one array named after each input", NOT_INPUT)
        return self.inputs[0]

    def file(self, path: Any, kind: str = "file") -> Path:
        if not isinstance(path, (str, Path)) or not str(path):
            raise DataProblem(f"{self.what} needs a path, got {path!r}",
                              f'write {kind}s as strings: "data/train.csv"')
        p = Path(path).expanduser()
        full = p if p.is_absolute() else self.base / p
        exists = full.is_dir() if kind == "folder" else full.is_file()
        if not exists:
            where = "" if p.is_absolute() else f" (relative paths start at {self.base})"
            raise DataProblem(f"data {kind} not found: {path}{where}",
                              f"check the path; the {kind} must exist before training starts")
        return full


def describe(call: Call) -> str:
    """`csv("a.csv", target="y")`: a data setting as it would be written in a spec."""
    parts = [repr(a) if isinstance(a, str) else str(a) for a in call.args]
    parts += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in call.kwargs.items()]
    parts = [p.replace("'", '"') for p in parts]
    return f"{call.name}({', '.join(parts)})" if parts else call.name


def _is_text(v: Any) -> bool:
    return isinstance(v, str)


# argument -> (test, what it must be), for the arguments of every data set kind but the paths
# (which Want.file checks) and synthetic's (synthetic_shape)
ARGUMENT_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "x": (_is_text, "an array name"),
    "y": (_is_text, "an array name"),
    "target": (lambda v: v is None or _is_text(v), "a column name"),
    "delimiter": (lambda v: _is_text(v) and len(v) == 1, "one character"),
    "encoding": (_is_text, "an encoding name such as \"utf-8\""),
    "standardize": (lambda v: isinstance(v, bool), "true or false"),
    "stride": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
               "a positive integer"),
}


def bind(func: Callable, name: str, what: str, call: Call) -> None:
    """Refuse arguments that `func(ctx, ...)` (a loader or a reader) does not take, or whose
    values it cannot use."""
    sig = inspect.signature(func)
    try:
        bound = sig.bind(None, *call.args, **call.kwargs)
    except TypeError as err:
        params = list(sig.parameters)[1:]
        raise DataProblem(f"{what}: {err}".replace(func.__name__ + "()", name),
                          f"{name} takes: {', '.join(params) or 'no arguments'}") from None
    for arg, value in list(bound.arguments.items())[1:]:
        test, must = ARGUMENT_RULES.get(arg, (None, ""))
        if test is not None and not test(value):
            raise DataProblem(f"{what}: `{arg}` must be {must}, got {value!r}",
                              f"{name} takes: {', '.join(list(sig.parameters)[1:])}")


def input_misfit(what: str, sample: tuple[int, ...], port: Port) -> Optional[DataProblem]:
    """Samples reshape to an input of the same number of values, and only to that."""
    if math.prod(sample) == math.prod(port.shape):
        return None
    return DataProblem(f"{what} gives samples of shape {list(sample)} ({math.prod(sample)} "
                       f"values), but input `{port.name}` of the model is {port} "
                       f"({math.prod(port.shape)} values)",
                       f"declare the input as `input {port.name}: {port.dtype}{list(sample)}` or "
                       "choose data of that shape", NOT_INPUT)


def fractional_misfit(what: str, port: Port) -> DataProblem:
    return DataProblem(f"{what} gives fractional values, but input `{port.name}` of the model is "
                       f"{port}", f"declare the input as `float{list(port.shape)}`", NOT_INPUT)


def class_shape_misfit(what: str, shape: tuple[int, ...], out: Port) -> Optional[DataProblem]:
    """Class targets hold one index per output row: the output's shape without its last dim."""
    want = out.shape[:-1]
    if shape == want or (want == () and shape == (1,)):
        return None
    hint = "the last output dimension holds one score per class"
    if shape == ():
        hint += f": flatten or pool before the last layer, for an output of [{out.shape[-1]}]"
    return DataProblem(f"{what} has targets of shape {list(shape)}, but a model whose output is "
                       f"{list(out.shape)} needs class indices of shape {list(want)}", hint,
                       NOT_OUTPUT)


def classes_misfit(what: str, classes: int, out: Port) -> Optional[DataProblem]:
    units = out.shape[-1] if out.shape else 1
    if classes <= units:
        return None
    return DataProblem(f"{what} has {classes} classes, but the model's output has {units} units",
                       f"give the last layer {classes} outputs (in the example specs: "
                       f"--set num_classes={classes})", NOT_OUTPUT)


def value_shape_misfit(what: str, shape: tuple[int, ...], out: Port) -> Optional[DataProblem]:
    if math.prod(shape) == math.prod(out.shape):
        return None
    return DataProblem(f"{what} has targets of shape {list(shape)}, but the model's output is "
                       f"{list(out.shape)}", "make the last layer's output match the targets",
                       NOT_OUTPUT)


# (message after the data set's name, hint) of the rules that look at values
FRACTIONAL_TARGETS = ("has fractional targets, but the loss wants class indices",
                      "use the mse loss for regression")
NEGATIVE_LABELS = ("has negative class labels", "number classes from 0")
NOT_FINITE = ("contains NaN or infinite values", "clean the data first")
NOT_BINARY = ("has targets other than 0 and 1, which the bce loss needs",
              "use cross_entropy for class indices, or mse for values")


def fit_problems(meta: Meta, want: Want) -> list[DataProblem]:
    """Every way the data does not fit the model's inputs and the loss, as far as it is known."""
    out: list[DataProblem] = []
    what = want.what
    for port in want.inputs:
        key = port.name if port.name in meta.inputs else ""
        if key not in meta.inputs:
            continue
        problem = input_misfit(what, meta.inputs[key], port)
        if problem is None and meta.fractional and port.dtype in ("long", "bool"):
            problem = fractional_misfit(what, port)
        if problem is None and meta.finite is False and port.dtype == "float":
            problem = DataProblem(f"{what} {NOT_FINITE[0]}", NOT_FINITE[1], NOT_INPUT)
        if problem is not None:
            out.append(problem)
    if not meta.split_by_loader and meta.samples is not None:
        n, n_train = meta.samples, int(round(meta.samples * want.split))
        if n_train < 1 or n_train >= n:
            out.append(DataProblem(f"{what} has {n} samples: a split of {want.split} leaves an "
                                   "empty training or test set",
                                   "use more data or a split between them"))
    out += _target_problems(meta.labels, want)
    return out


def _target_problems(labels: Labels, want: Want) -> list[DataProblem]:
    what, out_port, target = want.what, want.output, want.target
    if target is None or labels.shape is None:
        return []
    if target == "class":
        if labels.integral is False:
            return [DataProblem(f"{what} {FRACTIONAL_TARGETS[0]}", FRACTIONAL_TARGETS[1],
                                NOT_OUTPUT)]
        problems = [class_shape_misfit(what, labels.shape, out_port)]
        if labels.low is not None and labels.low < 0:
            problems.append(DataProblem(f"{what} {NEGATIVE_LABELS[0]}", NEGATIVE_LABELS[1],
                                        NOT_OUTPUT))
        elif labels.high is not None and problems[0] is None:
            problems.append(classes_misfit(what, int(labels.high) + 1, out_port))
        return [p for p in problems if p is not None]
    problem = value_shape_misfit(what, labels.shape, out_port)
    if problem is not None:
        return [problem]
    if target == "binary" and labels.low is not None and labels.high is not None and (
            labels.integral is False or labels.low < 0 or labels.high > 1):
        return [DataProblem(f"{what} {NOT_BINARY[0]}", NOT_BINARY[1], NOT_OUTPUT)]
    return []


def synthetic_shape(what: str, port: Port, shape: Any, classes: Any, size: Any
                    ) -> tuple[int, ...]:
    """The per-sample shape synthetic() generates; refuses arguments it cannot use."""
    positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1  # noqa: E731
    dims = port.shape if shape is None else tuple(shape) if isinstance(shape, (tuple, list)) \
        else (None,)
    if not (positive(size) and size >= 2) or not all(positive(d) for d in dims) or (
            classes is not None and not positive(classes)):
        raise DataProblem(f"{what}: size, shape and classes must be positive integers",
                          "e.g. synthetic(shape=[3, 32, 32], classes=10, size=2048)")
    if port.dtype == "long" and math.prod(dims) != dims[-1]:
        raise DataProblem(f"{what}: token data is one sequence per sample, but shape is "
                          f"{list(dims)}", f"use shape=[{math.prod(dims)}]", NOT_INPUT)
    return dims


def pick_arrays(want: Want, found: dict[str, tuple[tuple[int, ...], Any]], x: str, y: str,
                path: Any) -> dict[str, str]:
    """Which array feeds each input ("" for the only one), from the arrays' (shape, dtype): `x`,
    or one array named after each input of a model with several. Refuses a missing array, a
    count of samples that differs from `y`'s, and arrays that are not numbers."""
    import numpy as np

    names = sorted(found)
    hint = f'name the arrays: {want.what.split("(")[0]}(path, x="...", y="...")'
    if y not in found:
        raise DataProblem(f"{path} has no array `{y}` (it has: {', '.join(names) or 'none'})",
                          hint)
    if len(want.inputs) > 1:
        missing = [p.name for p in want.inputs if p.name not in found]
        if missing:
            raise DataProblem(f"{path} has no array for input `{missing[0]}` of the model (it "
                              f"has: {', '.join(names)})", "store one array per model input, "
                              "named after the input", NOT_INPUT)
        chosen = {p.name: p.name for p in want.inputs}
    elif x in found:
        chosen = {"": x}
    else:
        raise DataProblem(f"{path} has no array `{x}` (it has: {', '.join(names)})", hint)
    y_shape = found[y][0]
    if not y_shape:
        raise scalar_labels(path, y)
    for key, name in chosen.items():
        shape, dtype = found[name]
        if not shape or shape[0] != y_shape[0]:
            raise DataProblem(f"{path}: `{key or x}` has {shape[0] if shape else 0} samples but "
                              f"`{y}` has {y_shape[0]}", "the first dimension counts samples")
        if not (np.issubdtype(dtype, np.number) or dtype == bool):
            raise DataProblem(f"{path}: `{key or x}` is not numeric ({dtype})", "store numbers")
    return chosen


def unreadable_npz(path: Any, err: Exception) -> DataProblem:
    return DataProblem(f"{path} is not a readable .npz file ({type(err).__name__}: {err})",
                       "write it with numpy.savez(path, x=..., y=...)")


def scalar_labels(path: Any, y: str) -> DataProblem:
    return DataProblem(f"{path}: `{y}` is a single value, not one target per sample",
                       "the first dimension counts samples")


def images_port_misfit(port: Port) -> Optional[DataProblem]:
    if len(port.shape) == 3 and port.shape[0] in (1, 3) and port.dtype == "float":
        return None
    return DataProblem(f"images() needs an input of shape float[C, H, W] with C = 1 or 3, but "
                       f"input `{port.name}` is {port}", "declare `input x: float[3, 32, 32]`",
                       NOT_INPUT)


def text_port_misfit(port: Port) -> Optional[DataProblem]:
    if port.dtype == "long" and len(port.shape) == 1:
        return None
    return DataProblem(f"text() feeds token ids, but input `{port.name}` is {port}",
                       "declare the input as `long[seq]`", NOT_INPUT)


def vocab_misfit(path: Any, vocab: int, out: Port) -> Optional[DataProblem]:
    units = out.shape[-1] if out.shape else 0
    if vocab <= units:
        return None
    return DataProblem(f"{path} has {vocab} distinct characters, but the model's output has "
                       f"{units} units", f"give the model a vocabulary of at least {vocab} "
                       f"(in char_lstm: --set vocab={vocab})", NOT_OUTPUT)


def positions_misfit(seq: int, out: Port) -> Optional[DataProblem]:
    if len(out.shape) != 2 or out.shape[0] == seq:
        return None
    return DataProblem(f"text() needs one prediction per position, but the model maps {seq} "
                       f"tokens to an output of {list(out.shape)}", "output [seq, vocab]",
                       NOT_OUTPUT)


def windows_misfit(path: Any, length: int, seq: int, split: float) -> Optional[DataProblem]:
    """Both parts of a text (cut at `split`) need at least one window of `seq` and its target."""
    cut = int(length * split)
    if min(cut, length - cut) > seq:
        return None
    return DataProblem(f"{path} has {length} characters: too short for windows of {seq} in both "
                       f"a training and a test part (split {split})",
                       "use a longer text or a model with a shorter input")


def classification_args(what: str, n_samples: Any, n_features: Any, n_informative: Any,
                        n_classes: Any, n_clusters_per_class: Any, flip_y: Any, class_sep: Any,
                        random_state: Any) -> None:
    """Refuse arguments of classification() that make_classification would refuse (with a
    traceback) or that leave no data, before it runs; `check` applies the same rule."""
    whole = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low  # noqa
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    hint = ("e.g. classification(n_samples=1000, n_features=20, n_informative=10, n_classes=4, "
            "flip_y=0.1, class_sep=1.0)")
    for name, value, low in (("n_samples", n_samples, 2), ("n_features", n_features, 1),
                             ("n_informative", n_informative, 1), ("n_classes", n_classes, 2),
                             ("n_clusters_per_class", n_clusters_per_class, 1)):
        if not whole(value, low):
            raise DataProblem(f"{what}: `{name}` must be an integer of at least {low}, got "
                              f"{value!r}", hint)
    if n_informative > n_features:
        raise DataProblem(f"{what}: n_informative ({n_informative}) exceeds n_features "
                          f"({n_features})", "informative features are some of the features")
    if n_classes * n_clusters_per_class > 2 ** n_informative:
        raise DataProblem(f"{what}: {n_classes} classes x {n_clusters_per_class} clusters need "
                          f"at least {math.ceil(math.log2(n_classes * n_clusters_per_class))} "
                          f"informative features, got {n_informative}",
                          "each cluster sits on a corner of a hypercube of the informative "
                          "features: raise n_informative or lower n_clusters_per_class")
    if not (number(flip_y) and 0 <= flip_y <= 1):
        raise DataProblem(f"{what}: `flip_y` must be a fraction from 0 to 1, got {flip_y!r}",
                          "the share of labels assigned at random (label noise)")
    if not (number(class_sep) and class_sep > 0):
        raise DataProblem(f"{what}: `class_sep` must be a positive number, got {class_sep!r}",
                          hint)
    if random_state is not None and not whole(random_state, 0):
        raise DataProblem(f"{what}: `random_state` must be a non-negative integer, got "
                          f"{random_state!r}", "leave it out to draw the data from the run's "
                          "seed")
