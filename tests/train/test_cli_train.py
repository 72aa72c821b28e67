"""`nnspec train SPEC --out DIR` with the spec's own train section (the issue's acceptance run)."""
import json

from nnspec.cli import main


def test_nnspec_train_lenet5_reaches_97_percent(in_root, tmp_path, capsys):
    assert main(["train", "specs/lenet5.nn", "--out", str(tmp_path), "--no-progress"]) == 0
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["accuracy"] >= 0.97, final
    assert final["status"] == "completed"
    assert (tmp_path / "metrics.csv").exists() and (tmp_path / "checkpoints").is_dir()


def test_bad_data_is_reported_before_training(in_root, tmp_path, capsys):
    spec = tmp_path / "net.nn"
    spec.write_text('model m {\n  input x: float[4]\n  fc: linear(3)\n}\n'
                    'train {\n  data = csv("no_such_file.csv", target="label")\n}\n')
    assert main(["train", str(spec), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no_such_file.csv" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "final.json").exists()
