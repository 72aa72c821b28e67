"""Data sets arrive shaped for the model and split by the seed; bad data is a DataError before
training, with a message naming the file, line or shape, and a hint."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

import nnspec
from nnspec.lang.config import Call
from nnspec.train import DataError, load_data, run

from .conftest import PYTHON, ROOT, sections, subprocess_env


def model(inputs: str, out: str = "fc: linear(3)") -> dict:
    """The summary of a one-layer model with the given input declarations."""
    lines = "\n".join(f"  input {i}" for i in inputs.split(";"))
    return nnspec.loads(f"model m {{\n{lines}\n  flatten\n  {out}\n}}\n").summary()


@pytest.fixture(scope="module")
def lenet5():
    return nnspec.load(ROOT / "specs/lenet5.nn").summary()


def test_digits_fit_the_input_and_split_by_seed(lenet5):
    data = load_data(Call(name="digits"), lenet5, split=0.8, seed=0)
    x = data.train.inputs[0]
    assert x.shape == (1438, 1, 8, 8) and x.dtype == torch.float32
    assert len(data.test) == 359 and data.classes == 10
    assert 0 <= float(x.min()) and float(x.max()) == 1.0
    assert data.train.targets.dtype == torch.int64
    again = load_data(Call(name="digits"), lenet5, split=0.8, seed=0)
    other = load_data(Call(name="digits"), lenet5, split=0.8, seed=1)
    assert torch.equal(x, again.train.inputs[0])
    assert not torch.equal(x, other.train.inputs[0])
    # the two sides are a partition of all 1,797 images
    from sklearn.datasets import load_digits
    everything = torch.cat([x, data.test.inputs[0]]).reshape(-1, 64) * 16
    expected = load_digits().data.tolist()
    assert sorted(map(tuple, everything.tolist())) == sorted(map(tuple, expected))


@pytest.mark.parametrize("name,features,classes", [("iris", 4, 3), ("wine", 13, 3),
                                                   ("breast_cancer", 30, 2)])
def test_tables_are_standardized_with_training_statistics(name, features, classes):
    from sklearn.preprocessing import StandardScaler
    import sklearn.datasets
    data = load_data(Call(name=name), model(f"x: float[{features}]", f"fc: linear({classes})"),
                     split=0.7, seed=3)
    raw = getattr(sklearn.datasets, f"load_{name}")()
    n = len(raw.target)
    order = np.random.default_rng(np.random.SeedSequence([3, 0])).permutation(n)
    train_idx, test_idx = order[:round(0.7 * n)], order[round(0.7 * n):]
    scaler = StandardScaler().fit(raw.data[train_idx])  # reference: sklearn, float64
    np.testing.assert_allclose(data.train.inputs[0].numpy(), scaler.transform(raw.data[train_idx]),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.test.inputs[0].numpy(), scaler.transform(raw.data[test_idx]),
                               rtol=1e-4, atol=1e-4)
    assert data.test.targets.tolist() == raw.target[test_idx].tolist()


def test_bce_targets_match_a_single_logit():
    data = load_data(Call(name="breast_cancer"), model("x: float[30]", "fc: linear(1)"),
                     target="binary")
    y = data.train.targets
    assert y.shape == (len(data.train), 1) and y.dtype == torch.float32
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_synthetic_is_deterministic_and_learnable_shaped(lenet5):
    a = load_data(Call(name="synthetic", kwargs={"size": 100}), lenet5, seed=5)
    b = load_data(Call(name="synthetic", kwargs={"size": 100}), lenet5, seed=5)
    assert a.train.inputs[0].shape == (80, 1, 8, 8)
    assert torch.equal(a.train.inputs[0], b.train.inputs[0])
    assert a.train.targets.max() < 10
    tokens = load_data(Call(name="synthetic", kwargs={"size": 50, "classes": 7}),
                       nnspec.load(ROOT / "specs/char_lstm.nn", seq=8, vocab=7).summary())
    x, y = tokens.train.inputs[0], tokens.train.targets
    assert x.dtype == torch.int64 and torch.equal(y[:, :-1], x[:, 1:])


def test_npz_and_pt_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 2, 2)).astype(np.float32)
    y = np.arange(20) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "d.pt")
    summary = model("x: float[4]")
    for call in (Call(name="npz", args=(str(tmp_path / "d.npz"),)),
                 Call(name="pt", args=(str(tmp_path / "d.pt"),))):
        data = load_data(call, summary, split=0.5)
        got = torch.cat([data.train.inputs[0], data.test.inputs[0]])
        assert got.shape == (20, 4)
        assert sorted(got.sum(1).tolist()) == pytest.approx(sorted(x.reshape(20, 4).sum(1)))


def test_npz_with_one_array_per_input(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.ones((10, 4), np.float32), b=np.zeros((10, 2), np.float32),
             y=np.arange(10) % 3)
    summary = nnspec.loads("model m {\n  input a: float[4]\n  input b: float[2]\n"
                           "  out cat(a, b, dim=1) -> fc: linear(3)\n}\n").summary()
    data = load_data(Call(name="npz", args=(str(tmp_path / "two.npz"),)), summary)
    assert [t.shape[1:] for t in data.train.inputs] == [(4,), (2,)]
    assert float(data.train.inputs[0].min()) == 1.0 and float(data.train.inputs[1].max()) == 0.0


def test_csv_with_named_target_and_class_names(tmp_path):
    rows = ["a,label,b"] + [f"{i},{'cat' if i % 2 else 'dog'},{i * 2}" for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    data = load_data(Call(name="csv", args=(str(tmp_path / "t.csv"),), kwargs={"target": "label",
                                                                             "standardize": False}),
                     model("x: float[2]", "fc: linear(2)"), seed=1)
    x, y = data.train.inputs[0], data.train.targets
    assert data.classes == 2
    # dog (even a) is class 1, cat (odd a) class 0: class names in sorted order
    assert torch.equal(y, (x[:, 0] % 2 == 0).long())
    assert torch.equal(x[:, 1], x[:, 0] * 2)


def test_images_from_class_folders(tmp_path):
    from PIL import Image
    for label, value in (("a_dark", 10), ("b_light", 240)):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 12), (value, value, value)).save(tmp_path / label / f"{i}.png")
    (tmp_path / "b_light" / "notes.txt").write_text("not an image")
    data = load_data(Call(name="images", args=(str(tmp_path),)),
                     model("x: float[1, 8, 8]", "fc: linear(2)"), split=0.5)
    x = torch.cat([data.train.inputs[0], data.test.inputs[0]])
    y = torch.cat([data.train.targets, data.test.targets])
    assert x.shape == (6, 1, 8, 8)
    assert torch.allclose(x[y == 0], torch.tensor(10 / 255))
    assert torch.allclose(x[y == 1], torch.tensor(240 / 255))


def test_text_windows_predict_the_next_character(tmp_path):
    text = "hello world, " * 40
    (tmp_path / "t.txt").write_text(text)
    summary = nnspec.load(ROOT / "specs/char_lstm.nn", seq=16, vocab=12).summary()
    data = load_data(Call(name="text", args=(str(tmp_path / "t.txt"),)), summary, split=0.75)
    assert data.vocab == sorted(set(text))
    x, y = data.train.inputs[0], data.train.targets
    decode = lambda ids: "".join(data.vocab[i] for i in ids)  # noqa: E731
    assert x.shape[1:] == (16,) and y.shape == x.shape
    assert decode(x[0].tolist()) == text[:16] and decode(y[0].tolist()) == text[1:17]
    assert decode(data.test.inputs[0][0].tolist()) == text[int(len(text) * 0.75):][:16]


# ---- errors ------------------------------------------------------------------------------------

def error(call: Call, summary: dict, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_data(call, summary, **kw)
    return info.value


def test_missing_files_are_named(tmp_path, lenet5):
    chars = nnspec.load(ROOT / "specs/char_lstm.nn").summary()
    for call, summary in ((Call(name="npz", args=("nope/data.npz",)), lenet5),
                          (Call(name="csv", args=("gone.csv",)), model("x: float[2]")),
                          (Call(name="images", args=("no_folder",)), lenet5),
                          (Call(name="text", args=("x.txt",)), chars)):
        err = error(call, summary, base_dir=tmp_path)
        assert "not found" in err.message and str(call.args[0]) in err.message
        assert err.hint


@pytest.mark.parametrize("text,expect", [
    ("a,b,y\n1,2,0\n3,4\n5,6,1\n", "t.csv:3: expected 3 fields, got 2"),
    ("a,b,y\n1,2,0\n3,oops,1\n5,6,1\n", "t.csv:3: column `b` holds 'oops', not a number"),
    ("1,2,0\n3,4,1\n5,6,1\n", "no header row"),
    ("a,b,y\n1,2,0\n", "1 data rows"),
])
def test_malformed_csv(tmp_path, text, expect):
    (tmp_path / "t.csv").write_text(text)
    err = error(Call(name="csv", args=("t.csv",)), model("x: float[2]"), base_dir=tmp_path)
    assert expect in err.message, err.message


def test_data_that_cannot_fit_the_model(lenet5):
    err = error(Call(name="digits"), model("x: float[3, 8, 8]"))
    assert "[8, 8]" in err.message and "float[3, 8, 8]" in err.message
    err = error(Call(name="digits"), model("x: float[1, 8, 8]", "fc: linear(5)"))
    assert "10 classes" in err.message and "num_classes=10" in err.hint
    err = error(Call(name="digts"), lenet5)
    assert "did you mean `digits`" in err.hint
    err = error(Call(name="qqqqq"), lenet5)  # nothing close: the hint lists the data sets
    assert err.hint.startswith("choose one of: ") and "digits, " in err.hint
    err = error(Call(name="digits", kwargs={"size": 3}), lenet5)
    assert "size" in err.message


def test_run_raises_data_error_before_building_the_model(tmp_path):
    built = []

    class Spy:  # a spec whose build() records that training got that far
        def __init__(self, spec):
            self.spec, self.name = spec, spec.name

        def summary(self):
            return self.spec.summary()

        def build(self):
            built.append(True)
            return self.spec.build()

    spec = Spy(nnspec.load(ROOT / "specs/lenet5.nn"))
    train, parallel = sections(data=Call(name="csv", args=(str(tmp_path / "missing.csv"),)))
    with pytest.raises(DataError, match="not found"):
        run(spec, train, parallel, tmp_path / "out", progress=False)
    assert not built and not (tmp_path / "out").exists()


def test_module_reports_data_errors_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,4\n")
    r = subprocess.run([PYTHON, "-m", "nnspec.train", "specs/digits_mlp.nn", "--out",
                        str(tmp_path / "out"), "--train-json",
                        f'{{"data": {{"name": "csv", "args": ["{bad}"]}}}}'],
                       cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "data error:" in r.stderr and "bad.csv:3: expected 3 fields, got 2" in r.stderr
    assert "help:" in r.stderr and "Traceback" not in r.stderr
