"""specs/densenet121.nn is torchvision's densenet121: named list items and comprehensions with
generated names give its exact state_dict keys; its random weights load strictly and the outputs
agree in eval mode. The spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

from .vision_reference import assert_matches, code_lines


def test_densenet121_matches_torchvision(in_root):
    torch.manual_seed(0)
    assert_matches(torchvision.models.densenet121(weights=None), "specs/densenet121.nn", 32,
                   7_978_856)


def test_densenet121_is_shorter_than_torchvision(in_root):
    """torchvision's densenet.py, without docstrings, the weights enums and the other depths,
    still takes more lines than the whole spec."""
    source = Path(torchvision.models.densenet.__file__).read_text()
    source = re.sub(r'"""[\s\S]*?"""', "", source)
    start = source.index("class _DenseLayer")
    end = source.index("def _load_state_dict")
    assert code_lines(Path("specs/densenet121.nn").read_text()) < code_lines(source[start:end])
