"""specs/regnet_y_400mf.nn is torchvision's regnet_y_400mf: quoted, generated block names
(`trunk_output.block2.block2-0`), a projection only where the shape changes, group convolutions and
squeeze-and-excitation. Its random weights load strictly, the outputs agree in eval mode, the FLOPs
are torch's count, and the spec is shorter than torchvision's model code for the same model."""
import re
from pathlib import Path

import torch
import torchvision

from .vision_reference import assert_flops_match_counter, assert_matches, code_lines

SPEC = "specs/regnet_y_400mf.nn"


def test_regnet_y_400mf_matches_torchvision(in_root):
    torch.manual_seed(0)
    assert_matches(torchvision.models.regnet_y_400mf(weights=None), SPEC, 64, 4_344_144)


def test_regnet_y_400mf_flops_match_flop_counter(in_root):
    assert_flops_match_counter(SPEC, 64)


def test_regnet_y_400mf_is_shorter_than_torchvision(in_root):
    """torchvision's regnet.py from its stem to the RegNet class (the width rule included, which the
    spec's constant widths replace), without docstrings, the weights enums and the other sizes'
    functions, still takes more lines than the whole spec."""
    source = Path(torchvision.models.regnet.__file__).read_text()
    source = re.sub(r'"""[\s\S]*?"""', "", source)
    model = source[source.index("class SimpleStemIN"):source.index("class RegNet_Y_400MF_Weights")]
    y400 = source[source.index("def regnet_y_400mf("):source.index("def regnet_y_800mf(")]
    assert code_lines(Path(SPEC).read_text()) < code_lines(model) + code_lines(y400)
