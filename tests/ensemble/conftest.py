"""Ensemble tests: one intra-op thread (tiny models run fastest so, and the per_rank comparison
needs the same arithmetic in the runner's ranks as in this process), and a tiny ensemble spec."""
from __future__ import annotations

from pathlib import Path

from tests.train.conftest import one_thread  # noqa: F401 - autouse: one intra-op thread

ROOT = Path(__file__).resolve().parents[2]

TINY = """\
model tiny(num_classes = 3, hidden = 32) {{
  input x: float[10]
  fc1: linear(hidden)
  relu
  drop: dropout(0.1)
  fc2: linear(num_classes)
}}

train {{
  data = classification(n_samples=240, n_features=10, n_informative=5, n_classes=3, flip_y=0.1)
  epochs = {epochs}
  batch_size = 32
  optimizer = adamw(lr=1e-2)
  metrics = [accuracy]
  seed = {seed}
}}

ensemble {{
  members = {members}
  combine = {combine}
  vary = {vary}
  placement = {placement}
}}
"""


def tiny_spec(folder: Path, *, epochs: int = 3, seed: int = 0, members: int = 3,
              combine: str = "mean_probs", vary: str = "bootstrap", placement: str = "auto",
              name: str = "tiny.nn") -> Path:
    path = folder / name
    path.write_text(TINY.format(epochs=epochs, seed=seed, members=members, combine=combine,
                                vary=vary, placement=placement))
    return path
