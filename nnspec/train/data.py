"""Training data: scikit-learn's offline sets, synthetic data and user files, shaped to the model.

`load_data` turns the `data` setting of a train section (`digits`, `csv("runs.csv", target="y")`,
`text("poems.txt")`, ...) into a train and a test split of tensors that fit the spec's inputs and
output. Every problem (a missing file, a malformed row, 8x8 images for a 28x28 model, more classes
than output units) is a `DataError` raised here, before a model is built or a process group is
started. The split is a permutation drawn from the seed, so every rank and every resumed run sees
the same one.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from nnspec.lang.config import Call
from nnspec.data.fit import (
    FRACTIONAL_TARGETS, NEGATIVE_LABELS, NOT_BINARY, NOT_FINITE, DataProblem, Port, Want, bind,
    class_shape_misfit, classes_misfit, classification_args, describe, fractional_misfit, images_port_misfit,
    input_misfit, pick_arrays, positions_misfit, synthetic_shape, text_port_misfit, unreadable_npz,
    value_shape_misfit, vocab_misfit, windows_misfit
)
from nnspec.data.meta import (
    IMAGE_SUFFIXES, csv_columns, csv_features, csv_rows, image_classes, is_number, npz_headers
)
from nnspec.lang.diagnostics import did_you_mean
from nnspec.train.errors import DataError

TORCH_DTYPES = {"float": torch.float32, "long": torch.int64, "bool": torch.bool}


@dataclass
class Split:
    """One side of the data: a tensor per model input, and the targets."""

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def take(self, index: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        return tuple(x[index] for x in self.inputs), self.targets[index]


@dataclass
class Data:
    """The train and test splits, and what a run needs to know about them."""

    name: str
    train: Split
    test: Split
    classes: int | None = None          # classes the data has (class targets only)
    vocab: list[str] | None = None      # text(): the characters, in token order


@dataclass
class _Raw:
    """What a loader returns: arrays by input name ("" for the only input), and targets."""

    x: dict[str, np.ndarray]
    y: np.ndarray
    standardize: bool = False
    classes: int | None = None
    test: "_Raw | None" = None          # loaders that split themselves (text: by position)
    vocab: list[str] | None = None


@dataclass
class _Context(Want):
    """What the model and train section ask (`Want`: inputs, output, target, split, base,
    what), and the seed of the split and of synthetic data."""

    seed: int = 0


def _check(problem: Optional[DataProblem]) -> None:
    """Raise a fit rule's problem (shared with `nnspec check`) as the DataError train reports."""
    if problem is not None:
        raise DataError(problem.message, problem.hint)


def ports(summary: dict) -> tuple[list[Port], Port]:
    """The model's inputs and its first output, from `Spec.summary()`."""
    inputs = [Port(name, tuple(info["shape"]), info["dtype"])
              for name, info in summary["inputs"].items()]
    out = summary["outputs"][0]
    return inputs, Port("output", tuple(out["shape"]), out["dtype"])


def load_data(call: Call, summary: dict, *, split: float = 0.8, seed: int = 0,
              target: str = "class", base_dir: str | Path | None = None) -> Data:
    """Load, split and shape a data set for a model.

    Args:
        call: the data setting, e.g. `Call(name="csv", args=("x.csv",), kwargs={"target": "y"})`.
        summary: `Spec.summary()` of the model: its inputs and outputs.
        split: fraction of samples for training; the rest is the test set.
        seed: seeds the split (and synthetic data).
        target: what the loss wants: "class" indices, "binary" 0/1 floats, or "value" floats.
        base_dir: where relative paths start (default: the current directory).

    Raises:
        DataError: the data is missing or malformed, or does not fit the model.
    """
    inputs, output = ports(summary)
    ctx = _Context(inputs, output, target, split, Path(base_dir or Path.cwd()),
                   what=describe(call), seed=seed)
    loader = LOADERS.get(call.name)
    if loader is None:
        raise DataError(f"unknown data set `{call.name}`", did_you_mean(call.name, LOADERS)
                        or "choose one of: " + ", ".join(sorted(LOADERS)))
    try:
        bind(loader, call.name, ctx.what, call)
        raw = loader(ctx, *call.args, **call.kwargs)
    except DataProblem as problem:  # from the rules and helpers shared with `nnspec check`
        raise DataError(problem.message, problem.hint) from None
    if raw.test is None:
        train, test = _split(raw, ctx)
    else:
        train, test = raw, raw.test
    if raw.standardize:
        _standardize(train, test)
    return Data(ctx.what, _shape(train, ctx), _shape(test, ctx),
                raw.classes if target == "class" else None, raw.vocab)


def _split(raw: _Raw, ctx: _Context) -> tuple[_Raw, _Raw]:
    n = len(raw.y)
    n_train = int(round(n * ctx.split))
    if n_train < 1 or n_train >= n:
        raise DataError(f"{ctx.what} has {n} samples: a split of {ctx.split} leaves an empty "
                        "training or test set", "use more data or a split between them")
    order = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0])).permutation(n)
    pick = lambda idx: _Raw({k: v[idx] for k, v in raw.x.items()}, raw.y[idx])  # noqa: E731
    return pick(order[:n_train]), pick(order[n_train:])


def _standardize(train: _Raw, test: _Raw) -> None:
    """Zero mean, unit variance per feature, with statistics of the training split only."""
    for key, x in train.x.items():
        if not np.issubdtype(x.dtype, np.floating):
            continue
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        train.x[key] = ((x - mean) / std).astype(np.float32)
        test.x[key] = ((test.x[key] - mean) / std).astype(np.float32)


def _shape(raw: _Raw, ctx: _Context) -> Split:
    tensors = []
    for port in ctx.inputs:
        key = port.name if port.name in raw.x else ""
        tensors.append(_fit_input(raw.x[key], port, ctx))
    return Split(tuple(tensors), _fit_target(raw.y, ctx))


def _fit_input(x: np.ndarray, port: Port, ctx: _Context) -> torch.Tensor:
    _check(input_misfit(ctx.what, x.shape[1:], port))
    x = x.reshape(len(x), *port.shape)
    if port.dtype in ("long", "bool") and np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            _check(fractional_misfit(ctx.what, port))
    if port.dtype == "float" and not np.all(np.isfinite(x)):
        raise DataError(f"{ctx.what} {NOT_FINITE[0]}", NOT_FINITE[1])
    return torch.as_tensor(np.ascontiguousarray(x)).to(TORCH_DTYPES[port.dtype])


def _fit_target(y: np.ndarray, ctx: _Context) -> torch.Tensor:
    out = ctx.output
    if ctx.target == "class":
        return _class_targets(y, ctx)
    _check(value_shape_misfit(ctx.what, y.shape[1:], out))
    y = y.reshape(len(y), *out.shape).astype(np.float32)
    if ctx.target == "binary" and not np.all((y == 0) | (y == 1)):
        raise DataError(f"{ctx.what} {NOT_BINARY[0]}", NOT_BINARY[1])
    return torch.from_numpy(np.ascontiguousarray(y))


def _class_targets(y: np.ndarray, ctx: _Context) -> torch.Tensor:
    out = ctx.output
    if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
        raise DataError(f"{ctx.what} {FRACTIONAL_TARGETS[0]}", FRACTIONAL_TARGETS[1])
    _check(class_shape_misfit(ctx.what, y.shape[1:], out))
    y = y.reshape(len(y), *out.shape[:-1]).astype(np.int64)
    if y.size and int(y.min()) < 0:
        raise DataError(f"{ctx.what} {NEGATIVE_LABELS[0]}", NEGATIVE_LABELS[1])
    _check(classes_misfit(ctx.what, int(y.max()) + 1 if y.size else 0, out))
    return torch.from_numpy(np.ascontiguousarray(y))


# ---- scikit-learn's offline sets --------------------------------------------------------------

def _digits(ctx: _Context) -> _Raw:
    """1,797 8x8 gray images of digits, scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    ctx.only_input()
    d = load_digits()
    return _Raw({"": (d.images / 16.0).astype(np.float32)}, d.target, classes=10)


def _sklearn_table(loader_name: str) -> Callable:
    def load(ctx: _Context, standardize: bool = True) -> _Raw:
        import sklearn.datasets
        ctx.only_input()
        d = getattr(sklearn.datasets, loader_name)()
        return _Raw({"": d.data.astype(np.float32)}, d.target, standardize=standardize,
                    classes=len(d.target_names))
    load.__name__ = loader_name
    return load


def _classification(ctx: _Context, n_samples: int = 1000, n_features: int = 20,
                    n_informative: int = 10, n_classes: int = 2, n_clusters_per_class: int = 2,
                    flip_y: float = 0.01, class_sep: float = 1.0, random_state: int | None = None,
                    standardize: bool = True) -> _Raw:
    """sklearn.datasets.make_classification: Gaussian clusters on the corners of a hypercube of
    `n_informative` features, the other features noise (no redundant or repeated ones), and
    `flip_y` of the labels drawn at random: a noisy task where averaging models pays. The data
    is drawn from `random_state`, or from the run's seed when it is left out."""
    from sklearn.datasets import make_classification
    ctx.only_input()
    classification_args(ctx.what, n_samples, n_features, n_informative, n_classes,
                        n_clusters_per_class, flip_y, class_sep, random_state)
    x, y = make_classification(n_samples=n_samples, n_features=n_features,
                               n_informative=n_informative, n_redundant=0, n_repeated=0,
                               n_classes=n_classes, n_clusters_per_class=n_clusters_per_class,
                               flip_y=flip_y, class_sep=class_sep,
                               random_state=ctx.seed if random_state is None else random_state)
    return _Raw({"": x.astype(np.float32)}, y, standardize=standardize, classes=n_classes)


# ---- synthetic ---------------------------------------------------------------------------------

def _synthetic(ctx: _Context, shape: Any = None, classes: int | None = None,
               size: int = 1024) -> _Raw:
    """Random inputs with a learnable target: the argmax of a fixed random projection (float
    inputs) or the next token of a counting sequence (token inputs)."""
    port = ctx.only_input()
    shape = synthetic_shape(ctx.what, port, shape, classes, size)
    out = ctx.output
    classes = classes or (out.shape[-1] if out.shape else 1)
    width = math.prod(shape)  # the samples, and the projection that labels them (float inputs)
    projection = 0 if port.dtype == "long" else width * max(classes, math.prod(out.shape))
    _fits_in_memory(12 * (size * (width + 1) + projection),
                    f"{ctx.what} ({size} samples of {list(shape)})")
    rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 2]))
    if port.dtype == "long":
        start = rng.integers(0, classes, size=(size, 1))
        seq = (start + np.arange(shape[-1] + 1)) % classes
        x = seq[:, :-1].reshape(size, *shape)
        y = seq[:, 1:] if len(out.shape) == 2 else seq[:, -1]
        return _Raw({"": x}, y, classes=classes)
    x = rng.standard_normal((size, *shape)).astype(np.float32)
    flat = x.reshape(size, -1)
    if ctx.target == "class":
        w = rng.standard_normal((flat.shape[1], classes)).astype(np.float32)
        return _Raw({"": x}, np.argmax(flat @ w, axis=1), classes=classes)
    w = rng.standard_normal((flat.shape[1], math.prod(out.shape))).astype(np.float32)
    y = flat @ w / math.sqrt(flat.shape[1])
    return _Raw({"": x}, (y > 0).astype(np.float32) if ctx.target == "binary" else y)


def _fits_in_memory(nbytes: int, what: str) -> None:
    """MemoryError with the sizes, before numpy tries (and fails with "455 PiB") or the machine
    starts swapping; 12 bytes an element: float64 draws beside their float32 copy."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return
    if nbytes > available:
        raise MemoryError(f"{what} needs about {_bytes(nbytes)}, more than this machine's "
                          f"{_bytes(available)} of memory")


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ---- user files --------------------------------------------------------------------------------

def _arrays(ctx: _Context, found: dict[str, np.ndarray], x: str, y: str, path: Any) -> _Raw:
    found = {k: np.asarray(v) for k, v in found.items()}
    chosen = pick_arrays(ctx, {k: (v.shape, v.dtype) for k, v in found.items()}, x, y, path)
    target = found[y]
    return _Raw({key: found[name] for key, name in chosen.items()}, target,
                classes=int(target.max()) + 1 if target.size and
                np.issubdtype(target.dtype, np.integer) else None)


def _npz(ctx: _Context, path: Any, x: str = "x", y: str = "y") -> _Raw:
    """`x` and `y` arrays in a NumPy .npz file (or one array per model input)."""
    full = ctx.file(path)
    try:
        npz_headers(full)  # refuses what is not an npz as check does, in the same words
        with np.load(full, allow_pickle=False) as f:
            found = {k: f[k] for k in f.files}
    except Exception as err:  # noqa: BLE001 - any reader failure is the user's file
        raise unreadable_npz(path, err) from None
    return _arrays(ctx, found, x, y, path)


def _pt(ctx: _Context, path: Any, x: str = "x", y: str = "y") -> _Raw:
    """A dict of tensors saved with torch.save, loaded without running any pickled code."""
    full = ctx.file(path)
    try:
        obj = torch.load(full, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path} is not a readable torch file ({type(err).__name__})",
                        "write it with torch.save({'x': tensor, 'y': tensor}, path)") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {x: obj[0], y: obj[1]}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path} does not hold a dict of tensors",
                        "write it with torch.save({'x': tensor, 'y': tensor}, path)")
    return _arrays(ctx, {k: v.numpy() for k, v in obj.items()}, x, y, path)


def _csv_file(ctx: _Context, path: Any, target: str | None = None, standardize: bool = True,
              delimiter: str = ",") -> _Raw:
    """A table with a header row; `target` names the label column (default: the last one).
    Labels that are not numbers are class names, numbered in sorted order."""
    ctx.only_input()
    rows = csv_rows(ctx.file(path), path, delimiter)
    header, t = csv_columns(rows, path, target)
    features = [csv_features(row, lineno, header, t, path) for lineno, row in rows[1:]]
    labels = [row[t].strip() for _, row in rows[1:]]
    y, classes = _labels(labels, ctx, path)
    return _Raw({"": np.asarray(features, dtype=np.float32)}, y, standardize=standardize,
                classes=classes)


def _labels(labels: list[str], ctx: _Context, path: Any) -> tuple[np.ndarray, int | None]:
    if all(is_number(v) for v in labels):
        y = np.asarray([float(v) for v in labels])
        if ctx.target == "class" and np.all(y == np.round(y)):
            return y.astype(np.int64), int(y.max()) + 1
        return y.astype(np.float32), None
    if ctx.target != "class":
        bad = next(v for v in labels if not is_number(v))
        raise DataError(f"{path}: target {bad!r} is not a number, which this loss needs",
                        "use cross_entropy to treat the target column as class names")
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return np.asarray([index[v] for v in labels], dtype=np.int64), len(names)


def _images(ctx: _Context, folder: Any) -> _Raw:
    """One sub-folder per class (sorted names are classes 0, 1, ...), resized to the input."""
    port = ctx.only_input()
    root = ctx.file(folder, "folder")
    _check(images_port_misfit(port))
    from PIL import Image, UnidentifiedImageError
    c, h, w = port.shape
    classes = image_classes(root)
    xs, ys = [], []
    for label, sub in enumerate(classes):
        for file in sorted(sub.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    img = img.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(f"cannot read image {file} ({err})",
                                "remove or replace the file") from None
            xs.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))
            ys.append(label)
    if len(classes) < 2 or not xs:
        raise DataError(f"{folder} has {len(xs)} images in {len(classes)} class folders",
                        "put the images of each class in a sub-folder named after the class, "
                        "with at least two classes")
    return _Raw({"": np.stack(xs)}, np.asarray(ys), classes=len(classes))


def _text(ctx: _Context, path: Any, stride: int | None = None, encoding: str = "utf-8") -> _Raw:
    """Character-level language modelling: windows of the model's input length, targets shifted
    by one. The first `split` of the text trains, the rest tests (no window straddles both)."""
    port = ctx.only_input()
    out = ctx.output
    _check(text_port_misfit(port))
    full = ctx.file(path)
    try:
        text = full.read_text(encoding=encoding)
    except (UnicodeDecodeError, LookupError) as err:
        raise DataError(f"{path} is not {encoding} text ({err})", "pass encoding=...") from None
    vocab = sorted(set(text))
    _check(vocab_misfit(path, len(vocab), out))
    seq = port.shape[0]
    per_position = len(out.shape) == 2
    _check(positions_misfit(seq, out))
    stride = stride or seq
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.asarray([index[ch] for ch in text], dtype=np.int64)
    cut = int(len(ids) * ctx.split)
    parts = [_windows(ids[:cut], seq, stride, per_position), _windows(ids[cut:], seq, stride,
                                                                      per_position)]
    if min(len(p[1]) for p in parts) < 1:
        _check(windows_misfit(path, len(text), seq, ctx.split))
    train, test = (_Raw({"": x}, y, classes=len(vocab), vocab=vocab) for x, y in parts)
    train.test = test
    return train


def _windows(ids: np.ndarray, seq: int, stride: int, per_position: bool):
    starts = np.arange(0, max(len(ids) - seq, 0), stride)
    x = np.stack([ids[s:s + seq] for s in starts]) if len(starts) else np.zeros((0, seq), np.int64)
    if per_position:
        y = np.stack([ids[s + 1:s + seq + 1] for s in starts]) if len(starts) else x
    else:
        y = ids[starts + seq]
    return x, y


LOADERS: dict[str, Callable[..., _Raw]] = {
    "digits": _digits,
    "iris": _sklearn_table("load_iris"),
    "wine": _sklearn_table("load_wine"),
    "breast_cancer": _sklearn_table("load_breast_cancer"),
    "synthetic": _synthetic,
    "classification": _classification,
    "npz": _npz,
    "pt": _pt,
    "csv": _csv_file,
    "images": _images,
    "text": _text,
}
