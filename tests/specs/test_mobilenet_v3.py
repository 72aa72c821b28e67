"""specs/mobilenet_v3_small.nn is torchvision's mobilenet_v3_small, written the way a user would on a
first try: its random weights load strictly, the outputs agree in eval mode, FLOPs equal torch's
counter, and the spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

from .vision_reference import assert_flops_match_counter, assert_matches, code_lines

SPEC = "specs/mobilenet_v3_small.nn"


def test_mobilenet_v3_small_matches_torchvision(in_root):
    torch.manual_seed(0)
    assert_matches(torchvision.models.mobilenet_v3_small(weights=None), SPEC, 64, 2_542_856)


def test_mobilenet_v3_small_flops_match_flop_counter(in_root):
    assert_flops_match_counter(SPEC, 64)


def test_mobilenet_v3_small_is_shorter_than_torchvision(in_root):
    """mobilenetv3.py from its block config to the builder, without docstrings or weight enums."""
    source = Path(torchvision.models.mobilenetv3.__file__).read_text()
    source = re.sub(r'"""[\s\S]*?"""', "", source)
    model = source[source.index("class InvertedResidualConfig"):
                   source.index("class MobileNet_V3_Large_Weights")]
    small = source[source.index("def mobilenet_v3_small("):]
    assert code_lines(Path(SPEC).read_text()) < code_lines(model) + code_lines(small)
