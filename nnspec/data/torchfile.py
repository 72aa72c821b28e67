"""The tensors of a `torch.save` file, read without torch: names, shapes, dtypes, and the values of
small tensors.

A torch file is a zip archive whose `data.pkl` describes the object and whose `data/N` members
hold the raw bytes of each storage. The pickle is read by an unpickler that knows only the few
names `torch.save` writes for plain tensors in dicts, lists and tuples, and builds nothing but
`TensorHeader`s from them: any other name (a Parameter, a bfloat16 storage, a class of the
file's own) stops it with `Unsupported`, and the caller then knows nothing rather than something
false. Nothing in the file is executed.
"""
from __future__ import annotations

import collections
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# storage classes torch.save names -> the numpy dtype of their elements
STORAGE_DTYPES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
                  "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
                  "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
PICKLE_BYTES = 1 << 20   # a data.pkl of plain tensors is small; a larger one is not read


class Unsupported(Exception):
    """The file holds something this reader does not build: only torch.load can say more."""


@dataclass(frozen=True)
class TensorHeader:
    shape: tuple[int, ...]
    dtype: str
    storage: str           # the data/ member holding its bytes
    offset: int            # in elements
    stride: tuple[int, ...]    # in elements


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    if requires_grad or hooks:
        raise Unsupported("a tensor that requires grad")
    ints = lambda v: isinstance(v, tuple) and all(type(d) is int and d >= 0 for d in v)  # noqa
    if not (ints(size) and ints(stride) and len(size) == len(stride) and type(offset) is int):
        raise Unsupported("a malformed tensor")
    dtype, key = storage
    return TensorHeader(tuple(size), dtype, key, offset, tuple(stride))


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise Unsupported(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and pid[1] in STORAGE_DTYPES.values()):
            raise Unsupported("a storage of another kind")
        return pid[1], str(pid[2])


class TorchFile:
    """An open torch.save archive: `obj` is what torch.load would return, with a
    `TensorHeader` in place of each tensor."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        pickles = [n for n in self.zip.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise Unsupported("not a torch zip archive")
        self.prefix = pickles[0][: -len("data.pkl")]
        order = self._member("byteorder")
        if order is not None and order.strip() != b"little":
            raise Unsupported("big-endian storages")
        info = self.zip.getinfo(pickles[0])
        if info.file_size > PICKLE_BYTES:
            raise Unsupported("a large data.pkl")
        with self.zip.open(info) as fh:
            self.obj = _HeaderUnpickler(fh).load()

    def _member(self, name: str) -> bytes | None:
        try:
            return self.zip.read(self.prefix + name)
        except KeyError:
            return None

    def values(self, t: TensorHeader):
        """A tensor's values as a (read-only) numpy array: a view of its storage's bytes."""
        import numpy as np

        raw = self._member(f"data/{t.storage}")
        if raw is None:
            raise Unsupported("a missing storage")
        flat = np.frombuffer(raw, dtype=np.dtype(t.dtype).newbyteorder("<"))
        last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride))
        if math.prod(t.shape) and not t.offset <= last < len(flat):
            raise Unsupported("a tensor outside its storage")
        return np.lib.stride_tricks.as_strided(flat[t.offset:], t.shape,
                                               [s * flat.itemsize for s in t.stride],
                                               writeable=False)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> "TorchFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
