"""`nnspec compress` distils an ensemble into one student: the teacher spec has an ensemble
section, is trained as one (members, then the module) when its weights are missing, and teaches
through the module's combined output."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main

from .conftest import tiny_spec

STUDENT = """\
model student(num_classes = 3) {
  input x: float[10]
  fc1: linear(8)
  relu
  fc2: linear(num_classes)
}

train {
  data = classification(n_samples=240, n_features=10, n_informative=5, n_classes=3, flip_y=0.1)
  epochs = 20
  batch_size = 32
  optimizer = adamw(lr=1e-2)
  metrics = [accuracy]
}

compress {
  distill = teacher("tiny.nn", weights="teacher/tiny.safetensors", temperature=2, alpha=0.7)
}
"""


def test_a_student_distils_from_a_trained_ensemble(tmp_path, capsys):
    tiny_spec(tmp_path, members=3, epochs=20)
    student = tmp_path / "student.nn"
    student.write_text(STUDENT)
    assert main(["compress", str(student), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "training the teacher" in err and "mean of members" in err   # the ensemble's table
    weights = load_file(str(tmp_path / "teacher/tiny.safetensors"))
    assert {k.split(".")[1] for k in weights if k.startswith("members.")} == {"0", "1", "2"}
    teacher = nnspec.load(tmp_path / "tiny.nn").build(weights=tmp_path / "teacher/tiny.safetensors")
    assert len(teacher.members) == 3
    report = json.loads((tmp_path / "out/report.json").read_text())
    # "before" is the teacher (all its members); "after" the student it taught
    assert report["before"]["params"] == sum(p.numel() for p in teacher.parameters())
    assert report["after"]["params"] == 8 * 10 + 8 + 8 * 3 + 3
    assert report["before"]["accuracy"] > 0.6 and report["after"]["accuracy"] > 0.6  # of 3 classes
