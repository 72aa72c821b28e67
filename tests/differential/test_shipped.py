"""Every shipped spec and every valid golden spec, built and interpreted: check_spec on each.

Large models are shrunk through their own model parameters (widths, depths, sequence length, the
image size), which keeps every construct they use while float64 runs stay quick on two cores.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import nnspec

from .ensembles import check_ensemble
from .harness import check_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.nn"))
GOLDEN = sorted((ROOT / "tests" / "golden" / "valid").glob("*.nn"))

_GPT_TINY = {"vocab_size": 97, "n_embd": 32, "n_layer": 2, "n_head": 4, "seq": 8}
SHRINK = {
    "bert_base": {"vocab_size": 97, "hidden": 32, "layers": 2, "heads": 4,
                  "intermediate_size": 64, "max_positions": 16, "seq": 8},
    "gpt2_small": {**_GPT_TINY, "n_positions": 16},
    "gpt3_1_3b": {**_GPT_TINY, "n_ctx": 16},
    "gpt3_13b": {**_GPT_TINY, "n_ctx": 16},
    "llama": {"vocab_size": 97, "hidden": 32, "intermediate": 48, "layers": 2, "heads": 4,
              "kv_heads": 2, "seq": 8},
    "densenet121": {"size": 32, "num_classes": 10, "growth": 8, "config": [2, 3, 2, 2]},
    "efficientnet_b0": {"size": 32, "num_classes": 10},
    "mobilenet_v3_small": {"size": 32, "num_classes": 10},
    "regnet_y_400mf": {"size": 32, "num_classes": 10, "widths": [16, 24, 32, 48],
                       "depths": [1, 2, 2, 2]},
    # four stages kept (the downsampling between them too), narrow and two blocks deep
    "convnext_tiny": {"size": 32, "num_classes": 10, "widths": [8, 16, 24, 32],
                      "depths": [1, 2, 1, 1]},
    # every layer kind and name kept: two narrow encoder layers over 4 patches and the class token
    "vit_b_16": {"image_size": 16, "patch_size": 8, "num_layers": 2, "num_heads": 2,
                 "hidden_dim": 16, "mlp_dim": 24, "num_classes": 10},
    # a 16x16 image in 4x4 patches: stage 1 shifts 3x3 windows over a 4x4 map padded to 6x6, stage 2 merges
    # it to 2x2, where the window covers the padded map and nothing shifts; a 1x1 map pads to
    # merge
    "swin_t": {"size": 16, "num_classes": 10, "patch": 4, "embed_dim": 8, "depths": [2, 2, 1, 1],
               "heads": [1, 2, 2, 4], "window": 3},
    "resnet50": {"size": 64, "num_classes": 10},
    # VGG's widths are fixed; its classifier alone is 120M weights: a 32x32 image keeps it quick
    "vgg16": {"size": 32, "num_classes": 10},
}


@pytest.mark.parametrize("path", SPECS + GOLDEN, ids=[p.stem for p in SPECS + GOLDEN])
def test_built_module_matches_interpreter(path: Path):
    spec = nnspec.load(path, **SHRINK.get(path.stem, {}))
    if spec.members:  # an ensemble: combined output and each member against the interpreter
        check_ensemble(spec)
    for one in [m.spec for m in spec.members] or [spec]:
        result = check_spec(one)
        assert result["outputs"] and all(e <= 1e-10 for e in result["outputs"])

