"""The sizes of scikit-learn's offline data sets, known without loading them.

check reads them to fit `data = digits` against the model (datameta) and config to count the
optimizer steps a DeepSpeed config is written for (known_total_steps), so they sit below both.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Known:
    """One of scikit-learn's offline sets, as its loader returns it."""

    samples: int
    shape: tuple[int, ...]
    classes: int


# load_digits, load_iris, load_wine, load_breast_cancer (tests/test_datameta.py checks these
# against the real loaders)
SKLEARN = {"digits": Known(1797, (8, 8), 10), "iris": Known(150, (4,), 3),
           "wine": Known(178, (13,), 3), "breast_cancer": Known(569, (30,), 2)}
