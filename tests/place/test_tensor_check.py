"""What `check` says about `parallel { tensor = N }`: the world-size and pipeline rules (E0710),
attention heads that do not divide (E0713), and the warning that lists the layers kept whole."""
from __future__ import annotations

import pytest

import nnspec
from nnspec.cli import main
from nnspec.lang.config import (
    ParallelConfigError, ParallelSpec, Problem, TrainSpec, check_parallel, resolve_layout
)
from nnspec.lang.diagnostics import SpecError

from ..conftest import ROOT

E = "error"


def problems(world: int, train=None, **parallel) -> list[Problem]:
    return check_parallel(TrainSpec(**(train or {})), ParallelSpec(**parallel), world)


@pytest.mark.parametrize("world,parallel,expected", [
    (4, dict(tensor=3), [
        ("tensor", "tensor 3 does not divide the world size 4",
         "launch a multiple of 3 processes, or set tensor to one of 1, 2, 4")]),
    (8, dict(tensor=2, pipeline_stages=2, grad_accum=2), [
        ("tensor", "tensor 2 cannot be combined with pipeline_stages 2: DeepSpeed's pipeline "
         "engine has no tensor-parallel dimension (its topology is stages x data-parallel)",
         "set pipeline_stages = 1 to split layers across ranks, or tensor = 1")]),
    (4, dict(tensor=2, data_parallel=4), [
        ("data_parallel", "data_parallel 4 x tensor 2 x pipeline_stages 1 = 8 != world size 4",
         "set data_parallel = 2, or data_parallel = auto")]),
])
def test_tensor_rules(world, parallel, expected):
    got = [(p.key, p.message, p.help) for p in problems(world, **parallel) if p.severity == E]
    assert got == expected


def test_data_parallel_auto_is_world_over_stages_and_tensor():
    layout = resolve_layout(TrainSpec(batch_size=64), ParallelSpec(tensor=2), 8)
    assert (layout.data_parallel, layout.tensor, layout.micro_batch) == (4, 2, 16)
    layout = resolve_layout(TrainSpec(batch_size=64), ParallelSpec(tensor=4, data_parallel=2), 8)
    assert (layout.data_parallel, layout.micro_batch) == (2, 32)
    # a tensor-parallel group shares its samples: the batch divides by data-parallel ranks only
    assert not [p for p in problems(4, dict(batch_size=2), tensor=2) if p.severity == E]
    with pytest.raises(ParallelConfigError, match="tensor 3 does not divide"):
        resolve_layout(TrainSpec(), ParallelSpec(tensor=3), 4)


def test_every_zero_stage_is_accepted_with_tensor():
    # AutoTP trains under every ZeRO stage (deepspeed/runtime/engine.py,
    # _configure_tensor_parallel_states); tests/train/test_tensor_parallel.py runs 0 to 3
    for zero in (0, 1, 2, 3):
        assert not [p for p in problems(4, tensor=2, zero=zero) if p.severity == E]


def test_the_spec_world_size_counts_tensor_ranks():
    spec = nnspec.load(ROOT / "specs/gpt2_small.nn", n_layer=1,
                       sets={"parallel.tensor": 2, "parallel.data_parallel": 2})
    assert spec.world_size == 4


def test_heads_that_do_not_divide_are_a_located_error():
    with pytest.raises(SpecError) as err:
        nnspec.load(ROOT / "specs/llama.nn", sets={"parallel.tensor": 16})
    (diag,) = err.value.diagnostics
    assert diag.code == "E0713"
    assert diag.message == ("kv_attention: 8 key/value heads do not divide by tensor = 16: "
                            "`model.layers.*.self_attn.kv_attention` (32 layers)")
    assert diag.help == ("set tensor to a number that divides every attention's heads and "
                         "key/value heads: 1, 2, 4, 8")
    ((note, span),) = diag.notes
    assert note == "`model.layers.0.self_attn.kv_attention`, the first of them, is here"
    assert span.source.name.endswith("llama.nn") and span.line == 12


def test_layers_kept_whole_are_one_warning_grouped_by_reason():
    spec = nnspec.load(ROOT / "specs/gpt2_small.nn", sets={"parallel.tensor": 4})
    (warning,) = spec.warnings
    assert warning.severity == "warning"
    assert warning.message == "tensor 4 splits 48 layers and keeps 28 whole on every rank"
    assert [text for text, _ in warning.notes] == [
        "`transformer.wte`: embedding: vocabulary is not split (its weight is tied to lm_head)",
        "`transformer.wpe`: position_embedding: positions are not split",
        "`transformer.h.*.ln_1`, `transformer.h.*.ln_2`, `transformer.ln_f` (25 layers): "
        "layernorm: normalizes over the whole width (small: kept on every rank)",
        "`lm_head`: linear: tied to transformer.wte, which stays whole"]
    assert warning.render().startswith("warning[W0713]: tensor 4 splits")
    assert nnspec.load(ROOT / "specs/gpt2_small.nn", n_layer=1).warnings == []


def test_cli_check_prints_the_warning_on_stderr_and_succeeds(capsys):
    assert main(["check", str(ROOT / "specs/bert_base.nn"), "--set", "parallel.tensor=2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: bert_base(") and out.count("\n") == 1
    assert err.splitlines()[0] == "warning[W0713]: tensor 2 splits 72 layers and keeps 29 " \
                                  "whole on every rank"
    assert "note: `pooler.dense`: linear: not followed by a row-parallel partner (its output " \
           "is the model's output)" in err


def test_cli_check_refuses_tensor_with_pipeline(capsys):
    assert main(["check", str(ROOT / "specs/gpt2_small.nn"), "--set", "parallel.tensor=2",
                 "--set", "parallel.pipeline_stages=2", "--set", "parallel.grad_accum=2"]) == 1
    err = capsys.readouterr().err
    assert "error[E0710]: tensor 2 cannot be combined with pipeline_stages 2" in err
