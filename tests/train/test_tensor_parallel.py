"""`parallel { tensor = N }` under the real deepspeed runner (CPU ranks, gloo), on DeepSpeed's AutoTP.

tiny_gpt (specs/tiny_gpt_pipe.nn without its pipeline) trains 20 steps in fp32 with tensor = 2 on
2 ranks (ZeRO 0, and ZeRO 2 with the attentions' activations recomputed) and with tensor = 2 x data = 2 on 4 ranks (ZeRO 3, and ZeRO 1): the
loss at every step equals the one-process run's within 1e-4 relative; each tensor rank's
checkpoint (its ZeRO shards consolidated) holds half of every split weight (column-parallel q/k/v by sections and MLP up-projection, row-parallel
output projections) and the whole of the rest, and the halves put together are the exported
weights; a run stopped at step 10 and resumed ends bit-identical to the uninterrupted one; and
`nnspec export-weights` gives one state_dict that loads strictly into `build()` and equals the
weights the run itself gathered at its end. One launch per world size.

The fast tests below check the pieces without a runner: the partition config AutoTP is given,
the local heads against the whole attention's output, the emitted config, the refusals.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import nnspec
from nnspec.cli import main as nnspec_main
from nnspec.train.safeload import safe_load

from .conftest import ROOT, subprocess_env
from .tensor_worker import BASE, SPEC
from .test_distributed import free_port

pytest.importorskip("deepspeed")
DEEPSPEED = Path(sys.executable).parent / "deepspeed"
SETS = [f"{k}={v}" for k, v in BASE.items()]
LAUNCHES = {
    2: {"tensor2": {"sets": {"parallel.tensor": 2}, "resume": True},
        "tensor2_zero2": {"sets": {"parallel.tensor": 2, "parallel.zero": 2,
                                   "parallel.activation_checkpointing": ["CausalSelfAttention"]},
                          "resume": False}},
    4: {"tensor2_data2_zero3": {"sets": {"parallel.tensor": 2, "parallel.zero": 3},
                                "resume": True},
        "tensor2_data2_zero1": {"sets": {"parallel.tensor": 2, "parallel.zero": 1},
                                "resume": False}},
}


def train_losses(out: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(open(out / "metrics.csv"))
            if r["phase"] == "train"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same spec trained in this process: the losses every layout must reproduce."""
    from nnspec.train import loop, run

    out = tmp_path_factory.mktemp("one") / "run"
    spec = nnspec.load(SPEC, sets=BASE)
    before, loop.LOG_EVERY = loop.LOG_EVERY, 1
    try:
        run(spec, spec.settings.train, spec.settings.parallel, out, progress=False)
    finally:
        loop.LOG_EVERY = before
    return train_losses(out)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Launch the worker once per world size, on first use."""
    done: dict[int, tuple[subprocess.CompletedProcess, Path]] = {}

    def get(ranks: int):
        if ranks not in done:
            out = tmp_path_factory.mktemp(f"ranks{ranks}")
            cases = out / "cases.json"
            cases.write_text(json.dumps(LAUNCHES[ranks]))
            cmd = [str(DEEPSPEED), "--num_accelerators", str(ranks), "--master_port",
                   str(free_port()), "--module", "tests.train.tensor_worker", str(out),
                   str(cases)]
            done[ranks] = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(),
                                         capture_output=True, text=True, timeout=900), out
        return done[ranks]
    return get


def assert_clean_exit(r: subprocess.CompletedProcess, ranks: int) -> None:
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert out.count("exits successfully") == ranks, out[-5000:]
    assert "terminate called" not in out and "Traceback" not in out, out[-5000:]


def assert_shards(step: Path, spec, whole: dict[str, torch.Tensor], n: int) -> None:
    """Each tensor rank's saved module holds 1/n of every split weight (a fused q/k/v
    projection 1/n of each section) and all of the rest; put together, the shards are `whole`."""
    from nnspec.place.tensor import tensor_plan

    from nnspec.train.export import _zero_fp32
    from nnspec.train.export_tensor import _rank_weights

    plan = tensor_plan(spec.ir, n)
    ranks = [_rank_weights(step, r, _zero_fp32) if any(step.glob("*optim_states.pt")) else
             safe_load(step / f"mp_rank_{r:02d}_model_states.pt")["module"] for r in range(n)]
    split = set()
    for path, style in plan.splits.items():
        for kind in ("weight", "bias"):
            key = f"{path}.{kind}"
            if key not in whole or (style == "row" and kind == "bias"):
                continue  # a row-parallel layer's bias is added once, after the all-reduce
            dim = 0 if style == "column" else 1
            shards = [sd[key] for sd in ranks]
            expected = list(whole[key].shape)
            expected[dim] //= n
            assert all(list(s.shape) == expected for s in shards), (key, expected)
            sections = plan.sections.get(path, (whole[key].shape[dim],))
            local = [w // n for w in sections]
            pieces = [s.split(local, dim) for s in shards]  # [rank][section]
            rebuilt = torch.cat([torch.cat([p[i] for p in pieces], dim)
                                 for i in range(len(sections))], dim)
            assert torch.equal(rebuilt, whole[key]), key
            split.add(key)
    assert len(split) == 4 * 6  # per block: c_attn and c_fc weight and bias, both c_proj weights
    for key, value in whole.items():
        if key not in split:  # zero_to_fp32 leaves out the head tied to the embedding
            assert all(torch.equal(sd[key], value) for sd in ranks
                       if key in sd or key != "lm_head.weight"), key


@pytest.mark.parametrize("ranks", [2, 4])
def test_tiny_gpt_tensor_parallel_trains_like_one_process(launched, one_process, tmp_path, ranks):
    r, out = launched(ranks)
    assert_clean_exit(r, ranks)
    spec = nnspec.load(SPEC, sets=BASE)
    for name, case in LAUNCHES[ranks].items():
        run = out / name / "full"
        losses = train_losses(run)
        assert [s for s, _ in losses] == list(range(1, 21)), name
        for (step, mine), (_, ref) in zip(losses, one_process):
            assert mine == pytest.approx(ref, rel=1e-4), (name, step)

        exported = tmp_path / f"{name}.safetensors"
        assert nnspec_main(["export-weights", str(run), "-o", str(exported), "--spec", str(SPEC),
                            *[a for s in SETS for a in ("--set", s)]]) == 0
        whole = load_file(exported)
        spec.build().load_state_dict(whole, strict=True)
        gathered = load_file(run / "model.safetensors")  # what the run gathered at its end
        assert whole.keys() == gathered.keys()
        assert all(torch.equal(whole[k], gathered[k]) for k in whole), name
        assert_shards(run / "checkpoints" / "step-00000020", spec, whole, 2)

        if case["resume"]:  # stopped at 10, resumed: steps 11-20 and the end are identical
            cut = out / name / "cut"
            assert train_losses(cut)[10:] == losses[10:], name
            assert json.loads((cut / "final.json").read_text()) == \
                json.loads((run / "final.json").read_text())
            resumed = load_file(cut / "model.safetensors")
            assert all(torch.equal(resumed[k], gathered[k]) for k in gathered), name


# ---- without the runner --------------------------------------------------------------------------

LITERAL = """
model lit(seq = 4) {
  input x: float[seq, 8]
  q, k, v = x -> qkv: linear(24) -> split(8, dim=2)
  y = sdpa(q, k, v, heads=2, causal=true)
  out y -> proj: linear(8)
}
"""


def shard_linear(layer: torch.nn.Linear, style: str, sections, rank: int, n: int) -> None:
    """Cut `layer` in place to what AutoTP leaves tensor rank `rank` of `n` (the bias of a
    row-parallel layer is dropped here: the test adds it once after summing the ranks)."""
    with torch.no_grad():
        if style == "column":
            widths = sections or (layer.out_features,)
            keep = torch.cat([torch.arange(start + rank * (w // n), start + (rank + 1) * (w // n))
                              for start, w in zip([sum(widths[:i]) for i in range(len(widths))],
                                                  widths)])
            layer.weight = torch.nn.Parameter(layer.weight[keep])
            layer.bias = torch.nn.Parameter(layer.bias[keep])
        else:
            w = layer.in_features // n
            layer.weight = torch.nn.Parameter(layer.weight[:, rank * w:(rank + 1) * w])
            layer.bias = None


@pytest.mark.parametrize("source", ["tiny_gpt", "literal"])
def test_local_heads_sum_to_the_whole_attention(source):
    """Each rank attends with its heads (through its shard of q/k/v and of the output
    projection); the ranks' outputs summed, plus the bias once, are the whole attention's."""
    import copy
    from nnspec.place.tensor import tensor_plan
    from nnspec.train.local_heads import localize

    spec = (nnspec.load(SPEC, sets=BASE) if source == "tiny_gpt" else nnspec.loads(LITERAL))
    path = "transformer.h.1.attn" if source == "tiny_gpt" else ""
    n = 2
    plan = tensor_plan(spec.ir, n)
    assert plan.heads[path] == (2 if source == "tiny_gpt" else 1)
    torch.manual_seed(0)
    whole = spec.build().double()
    attention = whole.get_submodule(path)
    x = torch.randn(3, 4 if source == "literal" else 16, 8 if source == "literal" else 32,
                    dtype=torch.float64)
    expected = attention(x)
    total = 0
    for rank in range(n):
        model = copy.deepcopy(whole)
        localize(model, spec.source, {path: plan.heads[path]}, plan.sections, n)
        prefix = f"{path}." if path else ""
        for split, style in plan.splits.items():
            if split.startswith(prefix) and "." not in split[len(prefix):]:
                shard_linear(model.get_submodule(split), style, plan.sections.get(split), rank, n)
        total = total + model.get_submodule(path)(x)
    out_proj = [p for p, s in plan.splits.items() if s == "row" and p.startswith(path)][0]
    total = total + whole.get_submodule(out_proj).bias
    assert torch.allclose(total, expected, atol=1e-12), (total - expected).abs().max()


def test_partition_config_names_exactly_the_planned_splits():
    from nnspec.train.tensor_parallel import partition_config, plan_for

    spec = nnspec.load(SPEC, sets=BASE)
    plan = plan_for(spec, 2)
    config = partition_config(plan, spec.build())
    assert config["use_default_specs"] is False  # DeepSpeed's own name patterns stay off
    specs = config["layer_specs"]
    assert specs[-1] == {"patterns": [".*"], "partition_type": "skip"}
    by_path = {s["patterns"][0]: s for s in specs[:-1]}
    assert by_path[r"^transformer\.h\.0\.attn\.c_attn\.(weight|bias)$"] == {
        "patterns": [r"^transformer\.h\.0\.attn\.c_attn\.(weight|bias)$"],
        "partition_type": "column", "shape": [[32, 32, 32], -1], "partition_dim": 0}
    assert by_path[r"^transformer\.h\.3\.mlp\.c_proj\.(weight|bias)$"]["partition_type"] == "row"
    assert by_path[r"^transformer\.h\.3\.mlp\.c_fc\.(weight|bias)$"] == {
        "patterns": [r"^transformer\.h\.3\.mlp\.c_fc\.(weight|bias)$"],
        "partition_type": "column"}
    assert len(specs) == 1 + 4 * 4


def test_emitted_config_counts_data_parallel_ranks_and_asks_for_autotp():
    from nnspec.emit.deepspeed import ParallelConfigError, emit_deepspeed_config

    spec = nnspec.load(SPEC, sets={**BASE, "parallel.tensor": 2})
    train, parallel = spec.settings.train, spec.settings.parallel
    cfg = emit_deepspeed_config(train, parallel, 4, total_steps=20)
    assert cfg["tensor_parallel"] == {"autotp_size": 2}
    assert (cfg["train_batch_size"], cfg["train_micro_batch_size_per_gpu"],
            cfg["gradient_accumulation_steps"]) == (32, 4, 4)   # 4 x 4 x 2 data-parallel ranks
    assert "tensor_parallel" not in emit_deepspeed_config(
        train, parallel.model_copy(update={"tensor": 1}), 4, total_steps=20)
    with pytest.raises(ParallelConfigError, match="tensor 2 does not divide the world size 3"):
        emit_deepspeed_config(train, parallel, 3, total_steps=20)


def test_an_attention_outside_the_generated_source_is_refused():
    from nnspec.train.errors import TrainError
    from nnspec.train.local_heads import localize

    spec = nnspec.loads(LITERAL)
    with pytest.raises(TrainError, match="not a class of the generated model.py"):
        localize(torch.nn.Sequential(torch.nn.Linear(2, 2)), spec.source, {"0": 1}, {}, 2)
