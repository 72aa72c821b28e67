"""The five shipped compression specs, end to end on scikit-learn's digits: each criterion of the
compress issue is read from the report `nnspec compress` writes. Speed ratios are asserted
loosely (a shared 2-core machine is noisy); bench/bench_compress.py reports the real figures."""
import json
import statistics

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.compress.command import compress, summary_table
from nnspec.compress.report import unpack_state


def _run(name, tmp_path_factory, **sets):
    out = tmp_path_factory.mktemp(name) / "out"
    spec = nnspec.load(f"specs/{name}.nn", sets=sets)
    report = compress(spec, out, log=lambda m: None)
    assert json.loads((out / "report.json").read_text()) == report
    return report, out


@pytest.fixture(scope="module")
def root(request):
    mp = pytest.MonkeyPatch()
    mp.chdir(request.config.rootpath)
    yield request.config.rootpath
    mp.undo()


@pytest.fixture(scope="module")
def pruned(root, tmp_path_factory):
    return _run("digits_pruned", tmp_path_factory)


@pytest.fixture(scope="module")
def int8(root, tmp_path_factory):
    return _run("digits_int8", tmp_path_factory)


@pytest.fixture(scope="module")
def static_int8(root, tmp_path_factory):
    return _run("digits_static_int8", tmp_path_factory)


@pytest.fixture(scope="module")
def channels(root, tmp_path_factory):
    return _run("digits_channels", tmp_path_factory)


@pytest.fixture(scope="module")
def distill(root, tmp_path_factory):
    teacher = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    return _run("digits_distill", tmp_path_factory,
                **{"compress.distill.weights": str(teacher)}), teacher


def _drop(report):
    return report["before"]["accuracy"] - report["after"]["accuracy"]


def test_report_has_the_promised_fields(pruned):
    report, _ = pruned
    for side in ("before", "after"):
        assert set(report[side]) >= {"params", "nonzero_params", "size_bytes", "latency_ms",
                                     "accuracy"}
    assert report["speedup"] > 0 and report["size_ratio"] > 0


def test_magnitude_pruning_to_90_percent_costs_at_most_a_point(pruned):
    report, out = pruned
    assert report["sparsity"] >= 0.899
    assert report["after"]["nonzero_params"] <= 0.1 * report["before"]["params"] + 1000  # biases
    assert _drop(report) <= 0.01
    assert report["size_ratio"] > 5    # stored as mask bits + the surviving values
    # model.pt unpacks to weights the spec's own module loads strictly, with the zeros in place
    model = nnspec.load("specs/digits_pruned.nn").build()
    model.load_state_dict(unpack_state(torch.load(out / "model.pt", weights_only=True)))
    weights = [model.fc1.weight, model.fc2.weight, model.fc3.weight]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros >= 0.899


def test_dynamic_int8_is_smaller_faster_and_as_accurate(int8):
    report, _ = int8
    assert report["size_ratio"] >= 3.5
    assert report["speedup"] > 1.5     # the criterion is 2.5x; see the bench
    assert _drop(report) <= 0.01
    # stated tolerance: logits within 2% (relative L2), argmax agreeing on 99% of samples
    assert report["outputs"]["rel_error"] < 0.02
    assert report["outputs"]["argmax_agreement"] >= 0.99


def test_static_int8_cnn_is_faster_and_as_accurate(static_int8):
    report, _ = static_int8
    assert report["speedup"] > 1.1
    assert report["size_ratio"] > 2
    assert _drop(report) <= 0.01


def test_channel_pruning_makes_a_smaller_dense_model_written_back(channels):
    report, out = channels
    assert report["after"]["params"] < 0.35 * report["before"]["params"]
    assert report["after"]["nonzero_params"] == report["after"]["params"]   # dense
    assert report["speedup"] > 1.2     # the criterion is 1.6x; see the bench
    assert _drop(report) <= 0.02
    new_spec = nnspec.load(out / report["pruned_spec"])
    model = new_spec.build()
    from safetensors.torch import load_file
    model.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    assert new_spec.summary()["params"] == report["after"]["params"]
    assert new_spec.settings.compress.prune == ()   # the compress section has been applied


def test_distilled_student_beats_training_alone_on_few_labels(distill):
    """The issue's criterion: with 10% of the labels plus the teacher-labelled rest, the distilled
    student beats the same student trained alone on the same labels by >= 2 points (mean of 5)."""
    (_, out), teacher = distill
    assert teacher.is_file()   # trained on the way, since it was missing
    report = json.loads((out / "report.json").read_text())
    d = report["distill"]
    assert d["labels"] == 0.1 and d["transfer"] == "unlabelled"
    assert d["seeds"] == [0, 1, 2, 3, 4]
    assert len(d["distilled_accuracy"]) == len(d["alone_accuracy"]) == 5
    assert d["distilled_accuracy_mean"] == pytest.approx(statistics.mean(d["distilled_accuracy"]),
                                                         abs=1e-6)
    assert d["alone_accuracy_mean"] == pytest.approx(statistics.mean(d["alone_accuracy"]),
                                                     abs=1e-6)
    gain = d["distilled_accuracy_mean"] - d["alone_accuracy_mean"]
    assert gain >= 0.02
    assert d["gain_points_mean"] == pytest.approx(100 * gain, abs=1e-3)
    # few labels, the rest a transfer set: 10% of the training split, stratified
    total = d["labelled_samples"] + d["unlabelled_samples"]
    assert abs(d["labelled_samples"] - 0.1 * total) <= 10
    assert report["before"]["params"] >= 4 * report["after"]["params"]
    assert d["distilled_accuracy_mean"] >= 0.97 * report["before"]["accuracy"]   # the teacher's
    assert report["student_alone"]["params"] == report["after"]["params"]
    # `after` and `student_alone` are seed 0's two students
    assert report["after"]["accuracy"] == pytest.approx(d["distilled_accuracy"][0], abs=1e-6)
    assert report["student_alone"]["accuracy"] == pytest.approx(d["alone_accuracy"][0], abs=1e-6)
    assert (f"distilled accuracy {d['distilled_accuracy_mean']:.4f} vs alone "
            f"{d['alone_accuracy_mean']:.4f} on 10% of the labels, mean of 5 seeds"
            in summary_table(report))


def test_cli_writes_the_folder_and_prints_the_table(root, tmp_path, capsys, pruned):
    report, out = pruned
    spec_out = tmp_path / "again"
    code = main(["compress", "specs/digits_pruned.nn", "--weights", str(out / "model.safetensors"),
                 "-o", str(spec_out), "--set", "compress.finetune_epochs=1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "speedup" in printed and "nonzero_params" in printed
    assert {p.name for p in spec_out.iterdir()} >= {"report.json", "model.pt",
                                                     "model.safetensors"}


@pytest.mark.parametrize("argv, needle, code", [
    (["--weights", "missing.safetensors"], "--weights missing.safetensors: no such file", 2),
    (["--set", "compress.prune=magnitud"], "unknown prune method", 1),
])
def test_bad_input_exits_nonzero_without_a_traceback_or_a_folder(root, tmp_path, capsys, argv,
                                                                 needle, code):
    out = tmp_path / "out"
    assert main(["compress", "specs/digits_pruned.nn", "-o", str(out), *argv]) == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_a_spec_without_compress_directives_is_refused(root, tmp_path, capsys):
    out = tmp_path / "out"
    weights = tmp_path / "x.pt"
    weights.write_bytes(b"")
    assert main(["compress", "specs/lenet5.nn", "-o", str(out), "--weights", str(weights)]) == 1
    assert "no compress directives" in capsys.readouterr().err
    assert not out.exists()


def test_weights_that_do_not_fit_are_a_clear_error(root, tmp_path, capsys, int8):
    _, out = int8
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file
    save_file({"fc1.weight": torch.zeros(3, 3)}, str(bad))
    assert main(["compress", "specs/digits_pruned.nn", "--weights", str(bad),
                 "-o", str(tmp_path / "o")]) == 1
    assert "does not fit the model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


TINY = """
model tiny {
  input x: float[1, 8, 8]
  conv1: conv2d(8, 3, padding=1)
  bn1: batchnorm2d
  relu
  pool: maxpool2d(2)
  flatten
  fc1: linear(32)
  relu
  fc2: linear(10)
}
train { data = digits
  epochs = 2
  optimizer = adamw(lr=3e-3) }
"""


@pytest.mark.parametrize("section, check", [
    ("prune = nm(2, 4, on=[linear], skip=[\"fc2\"])\nquantize = qat(int8)\nfinetune_epochs = 1",
     lambda r: r["after"]["latency_ms"] > 0),
    ("prune = random(0.5, on=[conv2d, linear])\nquantize = weight_only(int4, on=[linear])\n"
     "finetune_epochs = 3\nfinetune_lr = 3e-3",
     lambda r: r["size_ratio"] > 1.5 and abs(r["sparsity"] - 0.5) < 0.01),
    ("quantize = cast(bf16, skip=[\"bn1\"])", lambda r: r["size_ratio"] > 1.5),
])
def test_other_directives_run_end_to_end(root, tmp_path, section, check):
    spec = nnspec.loads(TINY + f"compress {{\n{section}\n}}\n", name="tiny.nn")
    report = compress(spec, tmp_path / "out", log=lambda m: None)
    assert report["after"]["accuracy"] > 0.5   # 10 classes: chance is 0.1
    assert check(report)
