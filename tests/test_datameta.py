"""The data facts `nnspec check` reads (nnspec.data.meta) against the loaders `nnspec train` runs.

For every data set kind, on small generated files, and every model and loss below: when train's
loader accepts the data, check reports nothing; when the loader refuses it, check reports the
same message, except where the facts cannot be known cheaply (a `pt` file, a CSV's classes), and
then it reports nothing false.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import nnspec
from nnspec.lang.config import Call
from nnspec.data.fit import DataProblem, Want, describe, fit_problems
from nnspec.data.meta import READERS, SKLEARN, npz_headers, read_meta
from nnspec.train.data import LOADERS, ports
from nnspec.train.errors import DataError

ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    "digits_image": "input x: float[1, 8, 8]\n  flatten\n  fc: linear(10)",
    "flat64": "input x: float[64]\n  fc: linear(10)",
    "mnist_sized": "input x: float[1, 28, 28]\n  flatten\n  fc: linear(10)",
    "tokens64": "input x: long[64]\n  emb: embedding(17, 4)\n  flatten\n  fc: linear(10)",
    "no_flatten": "input x: float[1, 8, 8]\n  conv: conv2d(16, 3, padding=1)\n"
                  "  pool: maxpool2d(4)\n  fc: linear(10)",
    "table3": "input x: float[4]\n  fc: linear(3)",
    "table1": "input x: float[4]\n  fc: linear(1)",
    "rgb": "input x: float[3, 8, 8]\n  flatten\n  fc: linear(2)",
    "chars": "input x: long[16]\n  emb: embedding(40, 8)\n  fc: linear(40)",
    "two_inputs": "input a: float[4]\n  input b: float[4]\n  out a -> fc: linear(3)",
}
LOSSES = {"cross_entropy": "class", "mse": "value", "bce": "binary"}


@pytest.fixture(scope="module")
def summaries() -> dict[str, dict]:
    return {name: nnspec.loads(f"model m {{\n  {body}\n}}\n").summary()
            for name, body in MODELS.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Small data of every file kind, good and bad."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    x4 = rng.standard_normal((30, 4)).astype(np.float32)
    np.savez(root / "table.npz", x=x4, y=np.arange(30) % 3)
    np.savez_compressed(root / "packed.npz", x=x4, y=np.arange(30) % 3)
    np.savez(root / "five.npz", x=x4, y=np.arange(30) % 5)
    np.savez(root / "values.npz", x=x4, y=rng.standard_normal(30))
    np.savez(root / "binary.npz", x=x4, y=(np.arange(30) % 2).astype(np.float32))
    np.savez(root / "negative.npz", x=x4, y=np.arange(30) % 3 - 1)
    np.savez(root / "pairs.npz", x=x4, y=np.zeros((30, 2), np.int64))
    np.savez(root / "short_y.npz", x=x4, y=np.arange(20) % 3)
    np.savez(root / "no_y.npz", x=x4, labels=np.arange(30) % 3)
    np.savez(root / "images.npz", x=rng.random((30, 1, 8, 8)), y=np.arange(30) % 10)
    np.savez(root / "ints.npz", x=rng.integers(0, 17, (30, 64)), y=np.arange(30) % 10)
    np.savez(root / "two.npz", a=x4, b=x4, y=np.arange(30) % 3)
    np.savez(root / "scalar_y.npz", x=x4, y=np.int64(3))
    (root / "not_a_zip.npz").write_bytes(b"not a zip file at all")
    np.savez(root / "nan.npz", x=np.where(x4 > 1, np.nan, x4), y=np.arange(30) % 3)
    import torch
    torch.save({"x": torch.from_numpy(x4), "y": torch.arange(30) % 3}, root / "table.pt")
    torch.save((torch.from_numpy(x4).reshape(30, 1, 2, 2), torch.arange(30) % 10), root / "pair.pt")
    torch.save({"x": torch.from_numpy(x4), "y": [0, 1, 2]}, root / "not_tensors.pt")
    torch.save({"x": torch.from_numpy(x4)[:, ::2], "y": torch.arange(30) % 3}, root / "strided.pt")
    torch.save({"x": torch.from_numpy(x4), "y": (torch.arange(30) % 3).float() / 2}, root / "half.pt")
    torch.save({"x": torch.nn.Parameter(torch.from_numpy(x4)), "y": torch.arange(30)},
               root / "parameter.pt")
    header = "f1,f2,f3,f4,label\n"
    rows = "".join(f"{a:.3f},{b:.3f},{c:.3f},{d:.3f},{['cat', 'dog', 'eel'][i % 3]}\n"
                   for i, (a, b, c, d) in enumerate(x4))
    (root / "names.csv").write_text(header + rows)
    (root / "numbers.csv").write_text(header + "".join(
        f"{a:.3f},{b:.3f},{c:.3f},{d:.3f},{i % 3}\n" for i, (a, b, c, d) in enumerate(x4)))
    (root / "one_row.csv").write_text(header + "1,2,3,4,cat\n")
    (root / "no_header.csv").write_text("1,2,3,4,0\n5,6,7,8,1\n9,1,2,3,0\n")
    (root / "text_cell.csv").write_text(header + "1,x,3,4,cat\n5,6,7,8,dog\n")
    (root / "ragged.csv").write_text(header + "1,2,3,cat\n5,6,7,8,dog\n")
    for folder, classes in (("pictures", ("cats", "dogs")), ("one_class", ("cats",))):
        for c, name in enumerate(classes):
            (root / folder / name).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 255, (8 + i, 8, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / folder / name / f"{i}.png")
    (root / "empty_pictures" / "a").mkdir(parents=True)
    (root / "empty_pictures" / "b").mkdir()
    (root / "poem.txt").write_text("the quick brown fox jumps over the lazy dog. " * 8)
    (root / "short.txt").write_text("tiny text")
    return root


# (call, exact): exact means check knows every fact train's loader would refuse
DATA = [
    (Call(name="digits"), True), (Call(name="iris"), True), (Call(name="wine"), True),
    (Call(name="breast_cancer"), True), (Call(name="digitz"), True),
    (Call(name="digits", kwargs={"standardize": True}), True),
    (Call(name="iris", kwargs={"standardize": False}), True),
    (Call(name="synthetic"), True), (Call(name="synthetic", kwargs={"size": 1}), True),
    (Call(name="synthetic", kwargs={"shape": (4,), "classes": 5}), True),
    (Call(name="synthetic", kwargs={"shape": (2, 2), "size": 64}), True),
    *[(Call(name="npz", args=(f,)), True) for f in (
        "table.npz", "packed.npz", "five.npz", "values.npz", "binary.npz", "negative.npz",
        "pairs.npz", "short_y.npz", "no_y.npz", "images.npz", "two.npz", "scalar_y.npz",
        "not_a_zip.npz", "missing.npz")],
    (Call(name="npz", args=("no_y.npz",), kwargs={"y": "labels"}), True),
    (Call(name="npz", args=("ints.npz",)), True),
    (Call(name="npz"), True),
    # the classes of a CSV are known only from all its rows
    (Call(name="csv", args=("names.csv",)), False),
    (Call(name="csv", args=("numbers.csv",)), False),
    *[(Call(name="csv", args=(f,)), True) for f in (
        "one_row.csv", "no_header.csv", "text_cell.csv", "ragged.csv", "missing.csv")],
    *[(Call(name="pt", args=(f,)), True) for f in (
        "table.pt", "pair.pt", "not_tensors.pt", "strided.pt", "half.pt", "missing.pt")],
    (Call(name="pt", args=("not_a_zip.npz",)), False),   # torch.load's own words
    # arguments of the wrong kind: train's loaders would have crashed on these
    (Call(name="csv", args=("names.csv",), kwargs={"target": 3}), True),
    (Call(name="csv", args=("names.csv",), kwargs={"delimiter": ";;"}), True),
    (Call(name="text", args=("poem.txt",), kwargs={"stride": 0}), True),
    (Call(name="text", args=("poem.txt",), kwargs={"encoding": 8}), True),
    (Call(name="npz", args=("table.npz",), kwargs={"x": 1}), True),
    (Call(name="iris", kwargs={"standardize": "no"}), True),
    (Call(name="synthetic", kwargs={"shape": 4}), True),
    (Call(name="images", args=(7,)), True),
    (Call(name="npz", args=("nan.npz",)), True),
    (Call(name="csv", args=("names.csv",), kwargs={"target": "lable"}), True),
    (Call(name="images", args=("pictures",)), True),
    (Call(name="images", args=("one_class",)), True),
    (Call(name="images", args=("empty_pictures",)), True),
    (Call(name="text", args=("poem.txt",)), True),
    (Call(name="text", args=("short.txt",)), True),
    (Call(name="text", args=("poem.txt",), kwargs={"stride": 4}), True),
]


def check_says(call: Call, summary: dict, target: str, base: Path) -> list[str]:
    inputs, output = ports(summary)
    want = Want(inputs, output, target, 0.8, base, describe(call))
    try:
        meta = read_meta(call, want)
    except DataProblem as problem:
        return [problem.message]
    return [p.message for p in fit_problems(meta, want)] if meta is not None else []


def train_says(call: Call, summary: dict, target: str, base: Path) -> str | None:
    from nnspec.train.data import load_data

    try:
        load_data(call, summary, split=0.8, seed=0, target=target, base_dir=base)
    except DataError as err:
        return err.message
    return None


@pytest.mark.parametrize("call, exact", DATA, ids=[describe(c) for c, _ in DATA])
def test_check_refuses_what_train_refuses(call, exact, summaries, files):
    for model, summary in summaries.items():
        for loss, target in LOSSES.items():
            said = check_says(call, summary, target, files)
            refused = train_says(call, summary, target, files)
            where = f"{describe(call)} with {model} and {loss}"
            if refused is None:
                assert said == [], f"{where}: train accepts it, check says {said}"
            elif exact:
                assert refused in said, f"{where}: train says {refused!r}, check {said}"
            else:
                assert not said or refused in said, f"{where}: train {refused!r}, check {said}"


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_sklearn_constants_are_the_real_sets(name):
    import sklearn.datasets

    d = getattr(sklearn.datasets, f"load_{name}")()
    x = d.images if name == "digits" else d.data
    known = SKLEARN[name]
    assert (known.samples, known.shape) == (x.shape[0], x.shape[1:])
    assert known.classes == len(d.target_names) == int(d.target.max()) + 1


def test_readers_take_the_loaders_arguments():
    assert set(READERS) == set(LOADERS)
    for name, reader in READERS.items():
        assert list(inspect.signature(reader).parameters)[1:] == \
               list(inspect.signature(LOADERS[name]).parameters)[1:], name


def test_npz_headers_read_no_data(files, monkeypatch):
    """Shapes and dtypes come from the member headers, even of a compressed file."""
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called"))
    found = npz_headers(files / "packed.npz")
    assert {k: (s, str(d)) for k, (s, d) in found.items()} == {
        "x": ((30, 4), "float32"), "y": ((30,), str((np.arange(3)).dtype))}


def test_large_npz_labels_are_not_read(files, monkeypatch):
    """Over LABEL_BYTES the labels stay unknown: shapes are checked, classes are left to train."""
    import nnspec.data.meta as meta

    monkeypatch.setattr(meta, "LABEL_BYTES", 8)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called"))
    want = Want(ports(nnspec.loads("model m {\n  input x: float[4]\n  fc: linear(2)\n}\n")
                      .summary())[0], ports(nnspec.loads(
                          "model m {\n  input x: float[4]\n  fc: linear(2)\n}\n").summary())[1],
                "class", 0.8, files, "npz")
    facts = read_meta(Call(name="npz", args=("five.npz",)), want)
    assert facts.inputs == {"": (4,)} and facts.labels.high is None
    assert fit_problems(facts, want) == []


def test_the_check_modules_do_not_import_torch():
    """`nnspec check` is meant to answer without torch (a later issue tests the whole path)."""
    for module in ("nnspec/data/fit.py", "nnspec/data/meta.py", "nnspec/data/check.py",
                   "nnspec/data/torchfile.py"):
        tree = ast.parse((ROOT / module).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "torch" or "train" in n], module
