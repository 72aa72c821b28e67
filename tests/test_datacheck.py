"""`nnspec check` validates the train section against the data, and one run reports the errors of
every pass that can proceed (the golden fixtures train_data_*.nn hold the exact texts)."""
from __future__ import annotations

import numpy as np
import pytest

import nnspec
from nnspec.cli import main
from nnspec.lang.diagnostics import MAX_ERRORS, SpecError

MODEL = "model m {\n  input x: float[4]\n  fc: linear(3)\n}\n"


def errors(text: str, **kwargs) -> list[tuple[str, str, int | None]]:
    """(code, message, line) of every diagnostic `loads` reports; [] when the spec checks."""
    try:
        nnspec.loads(text, name="net.nn", **kwargs)
    except SpecError as err:
        return [(d.code, d.message, d.span.line if d.span else None) for d in err.diagnostics]
    return []


def test_model_sections_and_data_are_reported_in_one_run():
    text = ("model m {\n  input x: float[4]\n  fc: linaer(3)\n}\n"
            "train {\n  data = irsi\n  epocs = 3\n}\n"
            "parallel {\n  zero = 7\n}\n")
    codes = [(c, line) for c, _, line in errors(text)]
    # the misspelled setting makes the train section unusable: its data is not checked
    assert codes == [("E0201", 3), ("E0702", 7), ("E0703", 10)]
    text = text.replace("  epocs = 3\n", "")
    assert [(c, line) for c, _, line in errors(text)] == [("E0201", 3), ("E0703", 9),
                                                          ("E0730", 6)]


def test_data_errors_come_with_the_parallel_sections():
    text = MODEL.replace("float[4]", "float[5]") + ("train {\n  data = iris\n  batch_size = 64\n}"
                                                    "\nparallel {\n  micro_batch = 7\n}\n")
    assert [c for c, _, _ in errors(text)] == ["E0710", "E0732"]


def test_errors_are_capped_as_the_reporter_caps_them():
    layers = "".join(f"  l{i}: nosuch{i}(3)\n" for i in range(MAX_ERRORS + 5))
    text = f"model m {{\n  input x: float[4]\n{layers}}}\ntrain {{\n  data = digitz\n}}\n"
    with pytest.raises(SpecError) as info:
        nnspec.loads(text)
    assert len(info.value.diagnostics) == MAX_ERRORS and info.value.dropped == 6
    assert info.value.render().endswith(f"... and 6 more\n\n{MAX_ERRORS + 6} errors found")


def test_data_is_checked_where_the_spec_names_it():
    """digits is the default, but a spec that does not name its data is not held to it."""
    assert errors(MODEL) == []
    assert errors(MODEL, sets={"train.epochs": 2}) == []
    assert errors(MODEL + "train {\n  optimizer = sgd(lr=0.1)\n}\n") == []
    digits = ["E0732", "E0733"]  # 64 values for 4 inputs, 10 classes for 3 outputs
    assert [c for c, _, _ in errors(MODEL, sets={"train.data": "digits"})] == digits
    assert [c for c, _, _ in errors(MODEL + "train {\n  data = digits\n}\n")] == digits
    assert errors(MODEL + "train {\n  data = iris\n}\n") == []


def test_set_train_data_is_checked_like_the_spec(in_root, capsys):
    assert main(["check", "specs/lenet5.nn", "--set", "train.data=iris"]) == 1
    err = capsys.readouterr().err
    assert "error[E0732]: iris gives samples of shape [4]" in err
    assert "--> specs/lenet5.nn:21:3" in err  # the train section's data line, overridden


def test_data_files_are_read_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4), np.float32), y=np.arange(10) % 3)
    spec = MODEL + 'train {\n  data = npz("d.npz")\n}\n'
    assert errors(spec) == []
    assert errors(spec.replace("linear(3)", "linear(2)")) == [
        ("E0733", 'npz("d.npz") has 3 classes, but the model\'s output has 2 units', 6)]
    missing = errors(spec.replace("d.npz", "e.npz"))
    assert [(c, line) for c, _, line in missing] == [("E0731", 6)]
    assert missing[0][1].startswith("data file not found: e.npz")


def test_a_file_only_torch_can_read_raises_nothing_false(tmp_path, monkeypatch):
    """Not a zip archive: torch.load may read older formats, so check says nothing about it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.pt").write_bytes(b"whatever it holds")
    assert errors(MODEL + 'train {\n  data = pt("d.pt")\n}\n') == []
    assert [c for c, _, _ in errors(MODEL + 'train {\n  data = pt("x.pt")\n}\n')] == ["E0731"]


def test_bad_arguments_are_located(tmp_path):
    found = errors(MODEL + 'train {\n  data = iris(scale=true)\n}\n')
    assert found == [("E0731", "iris(scale=True): got an unexpected keyword argument 'scale'", 6)]


def test_train_refuses_before_loading_what_check_refuses(in_root, tmp_path, capsys):
    spec = tmp_path / "net.nn"
    spec.write_text(MODEL.replace("float[4]", "float[1, 28, 28]").replace("fc:", "flatten\n  fc:")
                    + "train {\n  data = digits\n}\n")
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error[E0732]: digits gives samples of shape [8, 8]" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
