"""nnspec.data.torchfile reads what torch.load(weights_only=True) reads of plain tensors, without torch,
and builds nothing else: a file that names any other global is refused before anything runs."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from nnspec.data.torchfile import TensorHeader, TorchFile, Unsupported


def test_headers_and_values_are_torch_loads(tmp_path):
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    saved = {"f32": torch.randn(3, 4), "i64": torch.arange(5), "bool": torch.tensor([True, False]),
             "u8": torch.arange(7, dtype=torch.uint8), "f16": torch.ones(2, 2, dtype=torch.half),
             "view": base[1:5, ::3], "transposed": base.t(), "scalar": torch.tensor(3)}
    torch.save(saved, tmp_path / "t.pt")
    loaded = torch.load(tmp_path / "t.pt", weights_only=True)
    with TorchFile(tmp_path / "t.pt") as tf:
        assert set(tf.obj) == set(loaded)
        for name, header in tf.obj.items():
            assert isinstance(header, TensorHeader)
            assert header.shape == tuple(loaded[name].shape), name
            np.testing.assert_array_equal(tf.values(header), loaded[name].numpy(), err_msg=name)


def test_a_list_or_tuple_of_tensors(tmp_path):
    torch.save((torch.zeros(2, 3), [torch.ones(4)]), tmp_path / "t.pt")
    with TorchFile(tmp_path / "t.pt") as tf:
        x, (y,) = tf.obj
        assert (x.shape, x.dtype, y.shape) == ((2, 3), "float32", (4,))


@pytest.mark.parametrize("obj", [
    {"w": torch.nn.Parameter(torch.zeros(2))},       # torch._utils._rebuild_parameter
    {"w": torch.zeros(2, dtype=torch.bfloat16)},      # a storage numpy has no dtype for
    {"w": torch.zeros(2, requires_grad=True)},
])
def test_what_is_not_a_plain_tensor_is_unsupported(tmp_path, obj):
    torch.save(obj, tmp_path / "t.pt")
    with pytest.raises(Unsupported):
        TorchFile(tmp_path / "t.pt")


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned",))


def test_a_crafted_file_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": _Payload()}, protocol=2))
        z.writestr("archive/byteorder", "little")
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(Unsupported, match="system"):
        TorchFile(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
