"""A TensorPlan computes what the model computes: the forward pass simulated the
tensor-parallel way (tp_simulate.py: per-rank slices, heads / n, partial sums at the row-parallel
layers) equals the interpreter's unsplit one in float64, for the shipped transformer shapes and
for random specs from the differential tests' generator."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import nnspec
from nnspec import interp
from nnspec.export.inputs import draw_inputs
from nnspec.place.tensor import tensor_plan

from ..conftest import ROOT
from ..differential.harness import default_dtype, fill_state
from ..differential.specgen import specs
from .tp_simulate import simulate


def split_equals_whole(spec, n: int, seed: int = 0) -> int:
    """Check the simulated split forward against the interpreter; the number of split layers."""
    plan = tensor_plan(spec.ir, n)
    with default_dtype(torch.float64):
        state = spec.build().to(torch.float64).eval().state_dict()
        gen = torch.Generator().manual_seed(seed)
        fill_state(state, gen)
        inputs = draw_inputs(spec.ir, gen)
        whole = interp.run(spec.ir, state, [x.clone() for x in inputs])
        split = simulate(spec.ir, plan, state, inputs)
    assert len(split) == len(whole)
    for a, b in zip(split, whole):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    return len(plan.splits)


@pytest.mark.parametrize("name,n,overrides", [
    ("gpt2_small", 2, dict(vocab_size=50, n_positions=16, seq=16, n_embd=24, n_layer=2, n_head=4)),
    ("gpt2_small", 4, dict(vocab_size=50, n_positions=16, seq=16, n_embd=24, n_layer=1, n_head=4)),
    ("llama", 2, dict(vocab_size=50, hidden=32, intermediate=48, layers=2, heads=4, kv_heads=2,
                      seq=8)),
    ("bert_base", 2, dict(vocab_size=50, hidden=24, layers=2, heads=4, intermediate_size=40,
                          max_positions=16, seq=8)),
    ("vit_b_16", 2, dict(image_size=16, patch_size=8, num_layers=2, num_heads=4, hidden_dim=24,
                         mlp_dim=40, num_classes=5)),
])
def test_shipped_transformers_split_exactly(name, n, overrides):
    spec = nnspec.load(ROOT / "specs" / f"{name}.nn", **overrides)
    assert split_equals_whole(spec, n) > 0


@settings(max_examples=80, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(specs())
def test_random_specs_split_exactly(generated):
    with tempfile.TemporaryDirectory() as folder:
        spec = nnspec.load(generated.write(Path(folder)))
    split_equals_whole(spec, 2)
