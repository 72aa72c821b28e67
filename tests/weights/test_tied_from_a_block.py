"""Weights in and out of a model whose block ties to a model layer passed in (GPT-2's head as a
block, tied to `wte`): a checkpoint that holds the tensor once (as transformers' save_pretrained
writes a tied head) loads into both names; export writes every key, as state_dict has them."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import nnspec
from nnspec.weights import from_model

SPEC = """
block Head(vocab, embed) {
  in h
  out h -> lm_head: linear(vocab, bias=false, tie=embed)
}
model lm(vocab = 30, width = 8) {
  input ids: long[6]
  h = ids -> wte: embedding(vocab, width) -> fc: linear(width)
  out h -> head: Head(vocab, wte)
}
"""


def _checkpoint(drop_tied: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    sd = {"wte.weight": torch.randn(30, 8), "fc.weight": torch.randn(8, 8),
          "fc.bias": torch.randn(8)}
    if not drop_tied:
        sd["head.lm_head.weight"] = sd["wte.weight"].clone()
    return sd


@pytest.mark.parametrize("drop_tied", [True, False])
def test_a_tied_weight_loads_from_one_key_or_both(tmp_path, drop_tied):
    sd = _checkpoint(drop_tied)
    save_file(sd, str(tmp_path / "w.safetensors"))
    model = nnspec.loads(SPEC).build(weights=tmp_path / "w.safetensors")
    assert model.head.lm_head.weight is model.wte.weight
    assert torch.equal(model.head.lm_head.weight, sd["wte.weight"])


def test_export_writes_both_keys_as_separate_tensors():
    spec = nnspec.loads(SPEC)
    model = spec.build()
    out = from_model(model.state_dict(), spec.settings.weights)
    assert set(out) == {"wte.weight", "fc.weight", "fc.bias", "head.lm_head.weight"}
    assert torch.equal(out["wte.weight"], out["head.lm_head.weight"])
    assert out["wte.weight"].data_ptr() != out["head.lm_head.weight"].data_ptr()


def test_a_missing_source_key_is_reported_once_with_its_name(tmp_path):
    sd = _checkpoint(False)
    del sd["wte.weight"], sd["head.lm_head.weight"]
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(SPEC).build(weights=tmp_path / "w.safetensors")
    assert "`head.lm_head.weight` is missing" in str(err.value)
    assert "`wte.weight` is missing" in str(err.value)
