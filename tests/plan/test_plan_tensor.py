"""`nnspec plan` with tensor parallelism: memory per rank (split parameters and activations / N,
replicated ones whole), the all-reduces it adds per layer, the --auto search over tensor degrees
that divide a machine's GPUs, and the line that says when only tensor parallelism fits."""
from __future__ import annotations

import json

import nnspec
from nnspec.cli import main
from nnspec.place.tensor import tensor_plan
from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile
from nnspec.plan.search import search_space

from ..conftest import ROOT

PROFILE = load_profile(None)


def gpt2(**overrides):
    spec = nnspec.load(ROOT / "specs/gpt2_small.nn", **overrides)
    return spec, Model(spec.ir, spec.settings.train, spec.settings.parallel)


def test_memory_per_rank_splits_what_the_tensor_plan_splits():
    spec, model = gpt2()
    cluster = Cluster(8)
    one = evaluate(model, Choice(0, "none", "none", 1, 2, 4, ()), cluster, PROFILE)
    two = evaluate(model, Choice(0, "none", "none", 1, 2, 8, (), 2), cluster, PROFILE)
    assert (one["data_parallel"], two["data_parallel"]) == (8, 4)
    assert one["global_batch"] == two["global_batch"] == 64
    plan = tensor_plan(spec.ir, 2)
    split = plan.share_under("")
    total = spec.summary()["params"]
    # fp32 AdamW at ZeRO 0: 4 bytes of weights a parameter, of the parameters one rank holds
    assert two["per_gpu_bytes"]["params"] == 4 * (total - split.params // 2)
    assert one["per_gpu_bytes"]["params"] == 4 * total
    # the split layers' activations are halved, the rest (residual stream, norms) kept whole
    acts = one["per_gpu_bytes"]["activations"] - two["per_gpu_bytes"]["activations"]
    assert acts == 2 * 4 * (split.activations - split.activations // 2)
    # ranks of a tensor-parallel group build the whole model before AutoTP splits it
    assert two["construct_bytes_per_rank"] == one["construct_bytes_per_rank"] == 4 * total


def test_two_all_reduces_per_block_forward_and_two_backward():
    _, model = gpt2()
    p = evaluate(model, Choice(0, "none", "none", 1, 2, 8, (), 2), Cluster(8), PROFILE)
    comm = p["tensor_comm"]
    block = 1024 * 768 * 4        # seq x hidden, fp32
    assert comm["per_layer"] == [{"layer": f"transformer.h.{i}", "forward": 2, "backward": 2,
                                  "bytes_per_sample": 4 * block} for i in range(12)]
    assert (comm["forward_allreduces"], comm["backward_allreduces"]) == (24, 24)
    assert comm["bytes_per_step"] == 48 * block * 2 * 8        # micro_batch 2 x grad_accum 8
    # a ring all-reduce over 2 ranks sends (2 - 1) / 2 x 2 = 1 x the bytes, on the machine's links
    assert p["time"]["tensor_comm"] == comm["bytes_per_step"] / (1e9 * PROFILE.intra_node_gbs)
    assert p["time"]["comm"] >= p["time"]["tensor_comm"] > 0
    ckpt = evaluate(model, Choice(0, "none", "none", 1, 2, 8, ("transformer.h.*",), 2),
                    Cluster(8), PROFILE)["tensor_comm"]
    # recomputing a checkpointed block's forward pass repeats its forward all-reduces
    assert ckpt["per_layer"][0]["forward"] == 4 and ckpt["per_layer"][0]["backward"] == 2


def test_auto_searches_tensor_degrees_that_divide_a_machine():
    _, model = gpt2()
    choices, skipped = search_space(model, Cluster(8, nodes=2))
    assert {c.tensor for c in choices} == {1, 2, 4}
    assert "tensor 8: sdpa: 12 heads do not divide by tensor = 8" in skipped
    assert all(c.pipeline_stages == 1 for c in choices if c.tensor > 1)


def test_the_spec_own_tensor_setting_is_planned(capsys):
    assert main(["plan", str(ROOT / "specs/gpt2_small.nn"), "--gpus", "8", "--json",
                 "--set", "parallel.tensor=2"]) == 0
    configs = json.loads(capsys.readouterr().out)["configs"]
    assert {(c["tensor_parallel"], c["data_parallel"]) for c in configs} == {(2, 4)}


WIDE = """\
# one wide feed-forward layer over long sequences: a sample's activations outweigh its weights
model wide(seq = 4096, width = 1024, hidden = 32768) {
  input x: float[seq, width]
  out x -> up: linear(hidden) -> act: gelu -> down: linear(width)
}

train {
  batch_size = 8
  loss = mse
}
"""


def test_only_tensor_parallelism_fits(capsys, tmp_path):
    # one sample's activations (2 x 4096 x 32768 floats) do not fit 2.5 GB beside the runtime's
    # reserve, even at micro_batch 1 under ZeRO-3 and offload or in a pipeline; split 8 ways
    # they do
    path = tmp_path / "wide.nn"
    path.write_text(WIDE)
    assert main(["plan", str(path), "--gpus", "8", "--gpu-memory", "2.5GB", "--auto"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("only tensor"))
    assert line.startswith("only tensor parallelism fits (tensor 8): without it the closest "
                           "plan, ")
    assert "at micro_batch 1, needs " in line and " over 2.3 GiB" in line
    assert main(["plan", str(path), "--gpus", "8", "--gpu-memory", "2.5GB", "--auto",
                 "--write"]) == 0
    capsys.readouterr()
    written = nnspec.load(path)
    assert (written.settings.parallel.tensor, written.world_size) == (8, 8)
    # with room for every plan, the line is not printed
    assert main(["plan", str(path), "--gpus", "8", "--gpu-memory", "80GB", "--auto"]) == 0
    assert "only tensor" not in capsys.readouterr().out


def test_tensor_is_not_searched_with_zero_3():
    _, model = gpt2()
    choices, _ = search_space(model, Cluster(8))
    assert {c.zero for c in choices if c.tensor > 1} == {0, 1, 2}
