"""What a data set is, known without loading it: samples, per-sample shapes, labels, classes.

`nnspec check` reads these facts to refuse a train section whose data cannot feed the model, by
the rules of nnspec.data.fit that train's loaders apply too. Nothing here imports torch or reads
more than headers and small arrays: scikit-learn's sets are known constants (tested against the
real loaders), npz files give their array headers, a torch file its tensor headers (read without
torch, nnspec.data.torchfile), a CSV its header and first rows, an image folder its class folders, a
text file its characters (when small). What cannot be known cheaply (a large CSV's labels, a
torch file holding Parameters) is left unknown, and unknown facts raise no errors.
"""
from __future__ import annotations

import csv as _csv
import math
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

from nnspec.lang.config import Call
from nnspec.data.fit import (
    NOT_OUTPUT, DataProblem, Labels, Meta, Want, bind, classification_args, images_port_misfit,
    pick_arrays,
    positions_misfit, synthetic_shape, text_port_misfit, unreadable_npz, vocab_misfit,
    windows_misfit
)
from nnspec.lang.diagnostics import did_you_mean
from nnspec.data.sklearn_sets import SKLEARN

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


LABEL_BYTES = 16 << 20   # npz and pt arrays up to this size are read for their values


TEXT_BYTES = 4 << 20     # text files up to this size are read for their characters


CSV_ROWS = 2             # data rows a CSV must have, and the ones check reads




def unknown_data_set(call: Call) -> Optional[DataProblem]:
    if call.name in READERS:
        return None
    return DataProblem(f"unknown data set `{call.name}`", did_you_mean(call.name, READERS)
                       or "data sets: " + ", ".join(READERS), "E0730")


def read_meta(call: Call, want: Want) -> Optional[Meta]:
    """The facts of the data set `call` names, or None where nothing can be known cheaply.

    Raises:
        DataProblem: train would refuse this data (unknown name, bad arguments, missing or
            malformed file, or a model input the kind of data cannot feed).
    """
    unknown = unknown_data_set(call)
    if unknown is not None:
        raise unknown
    reader = READERS[call.name]
    bind(reader, call.name, want.what, call)
    try:
        return reader(want, *call.args, **call.kwargs)
    except OSError as err:  # a file that exists but cannot be read: permissions, a device
        raise DataProblem(f"{want.what}: cannot read {err.filename or 'the data'} "
                          f"({err.strerror or type(err).__name__})",
                          "check that the data can be read by this user") from None


def _known(name: str) -> Callable[..., Meta]:
    def read(want: Want, standardize: bool = True) -> Meta:
        want.only_input()
        known = SKLEARN[name]
        return Meta({"": known.shape}, Labels((), True, 0, known.classes - 1), fractional=True,
                    samples=known.samples)
    read.__name__ = name
    return read


def _digits(want: Want) -> Meta:
    want.only_input()
    known = SKLEARN["digits"]   # scaled to [0, 1] by /16: fractional
    return Meta({"": known.shape}, Labels((), True, 0, known.classes - 1), fractional=True,
                samples=known.samples)


def _classification(want: Want, n_samples: int = 1000, n_features: int = 20,
                    n_informative: int = 10, n_classes: int = 2, n_clusters_per_class: int = 2,
                    flip_y: float = 0.01, class_sep: float = 1.0,
                    random_state: Optional[int] = None, standardize: bool = True) -> Meta:
    """make_classification's samples, known from its arguments."""
    want.only_input()
    classification_args(want.what, n_samples, n_features, n_informative, n_classes,
                        n_clusters_per_class, flip_y, class_sep, random_state)
    return Meta({"": (n_features,)}, Labels((), True, 0, n_classes - 1), fractional=True,
                samples=n_samples)


def _synthetic(want: Want, shape: Any = None, classes: Optional[int] = None,
               size: int = 1024) -> Meta:
    port = want.only_input()
    shape = synthetic_shape(want.what, port, shape, classes, size)
    out = want.output
    classes = classes or (out.shape[-1] if out.shape else 1)
    if port.dtype == "long":
        label_shape = (shape[-1],) if len(out.shape) == 2 else ()
        return Meta({"": shape}, Labels(label_shape, True, 0, classes - 1), samples=size)
    if want.target == "class":
        labels = Labels((), True, 0, classes - 1)
    elif want.target == "binary":
        labels = Labels((math.prod(out.shape),), True, 0, 1)
    else:
        labels = Labels((math.prod(out.shape),), None)
    return Meta({"": shape}, labels, fractional=True, samples=size)


def npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """(shape, dtype) of every array of an .npz file, from the member headers alone."""
    import numpy as np

    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    found = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version in readers:
                    shape, _, dtype = readers[version](fh)
                else:  # 3.0 (utf-8 field names) has no public reader; np.load uses this one
                    shape, _, dtype = np.lib.format._read_array_header(fh, version)
            found[info.filename[:-4]] = (tuple(shape), dtype)
    return found


def _npz(want: Want, path: Any, x: str = "x", y: str = "y") -> Meta:
    import numpy as np

    full = want.file(path)
    try:
        found = npz_headers(full)
    except Exception as err:  # noqa: BLE001 - any reader failure is the user's file
        raise unreadable_npz(path, err) from None

    def values(name: str):
        with np.load(full, allow_pickle=False) as f:
            return f[name]
    try:
        return _arrays_meta(want, found, x, y, path, values)
    except DataProblem:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged member: train's np.load fails the same
        raise unreadable_npz(path, err) from None


def _arrays_meta(want: Want, found: dict[str, tuple[tuple[int, ...], Any]], x: str, y: str,
                 path: Any, values: Callable[[str], Any]) -> Meta:
    """The facts of named arrays (npz, pt) from their headers; `values(name)` is called only for
    small arrays, for what only values tell: classes, fractions, NaNs."""
    import numpy as np

    chosen = pick_arrays(want, found, x, y, path)
    y_shape, y_dtype = found[y]
    meta = Meta({key: found[name][0][1:] for key, name in chosen.items()},
                Labels(y_shape[1:], None), samples=y_shape[0])
    small = lambda key: math.prod(found[key][0]) * found[key][1].itemsize <= LABEL_BYTES  # noqa
    if np.issubdtype(y_dtype, np.number) and small(y):
        meta.labels = _label_stats(values(y))
    for name in chosen.values():
        if np.issubdtype(found[name][1], np.floating) and small(name):
            arr = values(name)
            finite = bool(np.all(np.isfinite(arr)))
            meta.finite = meta.finite and finite
            meta.fractional = meta.fractional or not finite or not np.all(arr == np.round(arr))
    return meta


def _label_stats(y) -> Labels:
    import numpy as np

    if not y.size or not np.all(np.isfinite(y)):
        return Labels(tuple(y.shape[1:]), None)
    return Labels(tuple(y.shape[1:]), bool(np.all(y == np.round(y))), float(y.min()),
                  float(y.max()))


def _pt(want: Want, path: Any, x: str = "x", y: str = "y") -> Optional[Meta]:
    """What a torch file holds, read without torch (nnspec.data.torchfile); None where only
    torch.load could tell (a Parameter, bfloat16, a file of another format)."""
    import numpy as np

    from nnspec.data.torchfile import TensorHeader, TorchFile

    full = want.file(path)
    try:
        with TorchFile(full) as tf:
            obj = tf.obj
            if isinstance(obj, (tuple, list)) and len(obj) == 2:
                obj = {x: obj[0], y: obj[1]}
            if not isinstance(obj, dict) or not all(isinstance(v, TensorHeader)
                                                    for v in obj.values()):
                raise DataProblem(f"{path} does not hold a dict of tensors",
                                  "write it with torch.save({'x': tensor, 'y': tensor}, path)")
            found = {str(k): (v.shape, np.dtype(v.dtype)) for k, v in obj.items()}
            return _arrays_meta(want, found, x, y, path, lambda name: tf.values(obj[name]))
    except DataProblem:
        raise
    except Exception:  # noqa: BLE001 - Unsupported, or a file torch.load may still read
        return None


def _csv_table(want: Want, path: Any, target: Optional[str] = None, standardize: bool = True,
         delimiter: str = ",") -> Meta:
    want.only_input()
    rows = csv_rows(want.file(path), path, delimiter, limit=CSV_ROWS + 1)
    header, t = csv_columns(rows, path, target)
    labels = []
    for lineno, row in rows[1:]:
        csv_features(row, lineno, header, t, path)
        labels.append(row[t].strip())
    # the labels of the first rows tell the shape; classes need them all
    bad = next((v for v in labels if not is_number(v)), None)
    if bad is not None and want.target not in (None, "class"):
        raise DataProblem(f"{path}: target {bad!r} is not a number, which this loss needs",
                          "use cross_entropy to treat the target column as class names",
                          NOT_OUTPUT)
    return Meta({"": (len(header) - 1,)}, Labels((), None))


# ---- CSV tables, read the same way by `check` (the first rows) and by train (all of them) ------

def csv_rows(full: Path, path: Any, delimiter: str,
             limit: Optional[int] = None) -> list[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file with their line numbers: all, or the first `limit`."""
    rows = []
    try:
        with open(full, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(_csv.reader(fh, delimiter=delimiter)):
                if any(c.strip() for c in row):
                    rows.append((i + 1, row))
                    if limit is not None and len(rows) >= limit:
                        break
    except (UnicodeDecodeError, _csv.Error) as err:
        raise DataProblem(f"{path} is not a readable CSV file ({err})",
                          "save it as UTF-8 text") from None
    if len(rows) <= CSV_ROWS:
        raise DataProblem(f"{path} has {max(len(rows) - 1, 0)} data rows",
                          "a CSV needs a header row and at least two rows of data")
    return rows


def csv_columns(rows: list[tuple[int, list[str]]], path: Any,
                target: Optional[str]) -> tuple[list[str], int]:
    """The header row's column names, and the index of the target column (default: the last)."""
    header = [c.strip() for c in rows[0][1]]
    if all(is_number(c) for c in header):
        raise DataProblem(f"{path} has no header row (its first row is all numbers)",
                          "add a first row naming the columns")
    target = header[-1] if target is None else target
    if target not in header:
        raise DataProblem(f"{path} has no column `{target}`", did_you_mean(target, header))
    return header, header.index(target)


def csv_features(row: list[str], lineno: int, header: list[str], t: int, path: Any) -> list[float]:
    """A data row's feature values (every column but the target's), which must be numbers."""
    if len(row) != len(header):
        raise DataProblem(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}",
                          "every row needs one value per column of the header")
    values = []
    for j, cell in enumerate(row):
        if j == t:
            continue
        try:
            values.append(float(cell))
        except ValueError:
            raise DataProblem(f"{path}:{lineno}: column `{header[j]}` holds {cell.strip()!r}, "
                              "not a number", "feature columns must be numeric") from None
    return values


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def image_classes(root: Path) -> list[Path]:
    """The class folders of an image folder, in label order."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _images(want: Want, folder: Any) -> Meta:
    port = want.only_input()
    root = want.file(folder, "folder")
    problem = images_port_misfit(port)
    if problem is not None:
        raise problem
    classes = image_classes(root)
    counts = [sum(1 for f in sub.iterdir() if is_image(f)) for sub in classes]
    if len(classes) < 2 or not sum(counts):
        raise DataProblem(f"{folder} has {sum(counts)} images in {len(classes)} class folders",
                          "put the images of each class in a sub-folder named after the class, "
                          "with at least two classes")
    filled = [i for i, n in enumerate(counts) if n]
    return Meta({"": port.shape}, Labels((), True, 0, filled[-1]), fractional=True)


def _text(want: Want, path: Any, stride: Optional[int] = None, encoding: str = "utf-8") -> Meta:
    port = want.only_input()
    problem = text_port_misfit(port)
    if problem is not None:
        raise problem
    full = want.file(path)
    out, seq = want.output, port.shape[0]
    length = vocab = None
    if full.stat().st_size <= TEXT_BYTES:   # a larger text is not read: its checks wait for train
        try:
            text = full.read_text(encoding=encoding)
        except (UnicodeDecodeError, LookupError) as err:
            raise DataProblem(f"{path} is not {encoding} text ({err})",
                              "pass encoding=...") from None
        length, vocab = len(text), len(set(text))
        problem = vocab_misfit(path, vocab, out)
        if problem is not None:
            raise problem
    problem = positions_misfit(seq, out) or (
        windows_misfit(path, length, seq, want.split) if length is not None else None)
    if problem is not None:
        raise problem
    label_shape = (seq,) if len(out.shape) == 2 else ()
    high = vocab - 1 if vocab else None   # token ids: every character of the text is a class
    return Meta({"": (seq,)}, Labels(label_shape, True, 0 if vocab else None, high),
                split_by_loader=True)


READERS: dict[str, Callable[..., Optional[Meta]]] = {
    "digits": _digits,
    "iris": _known("iris"),
    "wine": _known("wine"),
    "breast_cancer": _known("breast_cancer"),
    "synthetic": _synthetic,
    "classification": _classification,
    "npz": _npz,
    "pt": _pt,
    "csv": _csv_table,
    "images": _images,
    "text": _text,
}
