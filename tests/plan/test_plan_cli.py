"""`nnspec plan`: its JSON contract, --auto on 8 x 80 GB for GPT-2 small and the GPT-3 shapes,
writing the chosen plan back into a spec, and usage errors."""
from __future__ import annotations

import json
import shutil

import pytest

import nnspec
from nnspec.cli import main

from ..conftest import ROOT

REQUIRED = {"zero_stage", "offload_optimizer", "offload_param", "pipeline_stages", "micro_batch",
            "activation_checkpointing", "per_gpu_bytes", "per_cpu_bytes", "step_flops",
            "est_step_seconds", "fits"}
GPU_KEYS = {"params", "grads", "optimizer", "activations", "buffers", "total"}
EIGHT_80GB = ["--gpus", "8", "--gpu-memory", "80GB"]
BIG = 10 ** 13


def plan_json(capsys, spec: str, *args: str) -> dict:
    if "gpt3_13b" in spec:  # over the default 10-billion parameter limit, as the README says
        args = (*args, "--max-params", str(BIG))
    assert main(["plan", spec, *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract_and_one_source_of_truth(capsys):
    out = plan_json(capsys, str(ROOT / "specs/gpt2_small.nn"), *EIGHT_80GB)
    assert set(out) == {"params", "configs"}
    summary = nnspec.load(ROOT / "specs/gpt2_small.nn").summary()
    assert out["params"] == summary["params"] == 124_439_808
    own = out["configs"][0]
    assert own["source"] == "spec"
    # ZeRO 0-3 with and without offload: the alternatives it considered
    assert {(c["zero_stage"], c["offload_optimizer"], c["offload_param"])
            for c in out["configs"]} >= {(0, "none", "none"), (1, "none", "none"),
                                         (2, "none", "none"), (3, "none", "none"),
                                         (3, "cpu", "cpu")}
    for c in out["configs"]:
        assert REQUIRED <= set(c)
        assert set(c["per_gpu_bytes"]) == GPU_KEYS
        gpu = c["per_gpu_bytes"]
        assert gpu["total"] == sum(v for k, v in gpu.items() if k != "total")
        assert c["fits"] == (gpu["total"] <= 80 * 10 ** 9)
        # FLOPs per step: forward from the compiler, backward twice that
        assert c["step_flops"] == 3 * summary["flops"] * c["micro_batch"] * c["grad_accum"] * 8
    # fp32 AdamW, ZeRO 0: 4 + 4 + 8 bytes per parameter
    n = summary["params"]
    assert (own["per_gpu_bytes"]["params"], own["per_gpu_bytes"]["grads"],
            own["per_gpu_bytes"]["optimizer"]) == (4 * n, 4 * n, 8 * n)


def test_checkpointing_trades_memory_for_recomputation():
    from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile

    spec = nnspec.load(ROOT / "specs/gpt2_small.nn")
    model = Model(spec.ir, spec.settings.train, spec.settings.parallel)
    plain, ckpt = (evaluate(model, Choice(0, "none", "none", 1, 8, 1, patterns), Cluster(8),
                            load_profile("a100-80gb")) for patterns in ((), ("transformer.h.*",)))
    assert ckpt["activation_checkpointing"] == ["transformer.h.*"]
    assert ckpt["per_gpu_bytes"]["activations"] < plain["per_gpu_bytes"]["activations"] / 3
    # the 12 blocks' forward runs again: most of the model's FLOPs but the LM head's
    fwd = spec.summary()["flops"]
    extra = (ckpt["step_flops"] - plain["step_flops"]) / (8 * 8)
    assert 0.7 * fwd < extra < fwd
    assert ckpt["est_step_seconds"] > plain["est_step_seconds"]


def test_activations_are_the_outputs_kept_for_backward():
    """A 3-layer MLP: inputs, and every layer output but the views (flatten), per sample."""
    from nnspec.plan.estimate import activation_bytes
    from nnspec.plan.costs import model_costs

    spec = nnspec.loads("model m() {\n  input x: float[4, 8]\n  flatten\n  fc1: linear(64)\n"
                        "  relu\n  fc2: linear(10)\n}\n", name="m.nn")
    costs = model_costs(spec.ir)
    assert costs.input_float == 32
    assert activation_bytes(list(costs.units), (), 4, micro_batch=2) == 2 * 4 * (64 + 64 + 10)


def test_checkpointing_patterns_name_modules_or_blocks():
    """`transformer.h.*` and the block name `Block` checkpoint the same 12 blocks, one at a time;
    `transformer` checkpoints the whole trunk as one region, whose recomputation holds as much as
    not checkpointing at all."""
    from nnspec.plan.costs import model_costs, regions
    from nnspec.plan.estimate import activation_bytes

    units = list(model_costs(nnspec.load(ROOT / "specs/gpt2_small.nn").ir).units)
    by_path = [k for k, _ in regions(units, ("transformer.h.*",)) if k]
    assert by_path == [f"transformer.h.{i}" for i in range(12)]
    assert [k for k, _ in regions(units, ("Block",)) if k] == by_path
    assert [k for k, _ in regions(units, ("transformer",)) if k] == ["transformer"]
    blocks = activation_bytes(units, ("transformer.h.*",), 4, 1)
    trunk = activation_bytes(units, ("transformer",), 4, 1)
    plain = activation_bytes(units, (), 4, 1)
    assert blocks < plain / 3
    assert plain <= trunk <= plain * 1.01


def test_pipeline_stages_bubble_and_per_stage_memory():
    from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile

    spec = nnspec.load(ROOT / "specs/gpt3_1_3b.nn")
    model = Model(spec.ir, spec.settings.train, spec.settings.parallel)
    cluster = Cluster(8)
    one = evaluate(model, Choice(1, "none", "none", 1, 4, 16, ()), cluster,
                   load_profile("h100-80gb"))
    two = evaluate(model, Choice(1, "none", "none", 2, 4, 32, ()), cluster,
                   load_profile("h100-80gb"))
    assert two["data_parallel"] == 4 and len(two["stages"]) == 2
    assert two["time"]["bubble_fraction"] == pytest.approx(1 / (32 + 1))
    assert sum(s["params"] for s in two["stages"]) >= spec.summary()["params"]
    assert two["per_gpu_bytes"]["params"] < one["per_gpu_bytes"]["params"]
    assert two["step_flops"] == one["step_flops"]


def test_zero3_moves_three_times_the_parameters():
    """Communication: 2x the parameters for ZeRO 0-2, 3x for ZeRO-3 (one micro-batch per step)."""
    from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile

    spec = nnspec.load(ROOT / "specs/gpt2_small.nn", sets={"parallel.precision": "bf16",
                                                            "parallel.comm_dtype": "bf16"})
    model = Model(spec.ir, spec.settings.train, spec.settings.parallel)
    comm = {z: evaluate(model, Choice(z, "none", "none", 1, 8, 1, ()), Cluster(8),
                        load_profile("a100-80gb"))["time"]["comm"] for z in range(4)}
    assert comm[0] == comm[1] == comm[2]
    assert comm[3] == pytest.approx(1.5 * comm[0])
    # across machines the network is slower than NVLink
    inter = evaluate(model, Choice(0, "none", "none", 1, 2, 1, ()), Cluster(4, 4),
                     load_profile("a100-80gb"))["time"]["comm"]
    assert inter > comm[0]


@pytest.mark.parametrize("name", ["gpt2_small", "gpt3_1_3b", "gpt3_13b"])
def test_auto_on_eight_80gb_gpus_finds_plans_that_fit(capsys, name):
    out = plan_json(capsys, str(ROOT / f"specs/{name}.nn"), *EIGHT_80GB, "--auto")
    configs = out["configs"]
    assert configs[0]["fits"] and configs[0]["per_gpu_bytes"]["total"] <= 80 * 10 ** 9
    fitting = [c for c in configs if c["fits"]]
    assert all(a["est_step_seconds"] <= b["est_step_seconds"]
               for a, b in zip(fitting, fitting[1:]))
    misses = [c for c in configs if not c["fits"]]
    assert all(c["reasons"] and "over" in c["reasons"][0] for c in misses)
    if name == "gpt3_13b":
        assert misses  # e.g. ZeRO 0 needs 16 bytes a parameter: 200+ GB
        assert not any(c["fits"] for c in configs if c["zero_stage"] == 0
                       and c["pipeline_stages"] == 1 and c["tensor_parallel"] == 1)
        # split 8 ways, the 13B model's 16 bytes a parameter fit each GPU even without ZeRO
        assert any(c["fits"] for c in configs if c["zero_stage"] == 0
                   and c["tensor_parallel"] == 8)


def test_auto_explains_in_text(capsys):
    assert main(["plan", str(ROOT / "specs/gpt3_13b.nn"), *EIGHT_80GB, "--auto",
                 "--max-params", str(BIG)]) == 0
    text = capsys.readouterr().out
    assert "fit" in text and "do not fit:" in text
    assert "zero 0: needs" in text  # the closest ZeRO-0 miss, by how much


def copy_spec(tmp_path, name: str):
    shutil.copytree(ROOT / "specs" / "blocks", tmp_path / "blocks")
    path = tmp_path / f"{name}.nn"
    shutil.copy(ROOT / "specs" / f"{name}.nn", path)
    return path


@pytest.mark.parametrize("name", ["gpt2_small", "gpt3_1_3b", "gpt3_13b"])
def test_write_puts_the_plan_in_the_spec_and_it_compiles(capsys, tmp_path, name):
    from ..deepspeed.dsvalidate import deepspeed_config

    path = copy_spec(tmp_path, name)
    before = path.read_text()
    capsys.readouterr()  # whatever importing DeepSpeed printed
    out = plan_json(capsys, str(path), *EIGHT_80GB, "--auto", "--write")
    best = out["configs"][0]
    after = path.read_text()
    # everything outside the parallel section is kept byte for byte
    head = before.split("\nparallel {")[0]
    assert after.startswith(head)
    spec = nnspec.load(path, max_params=BIG)
    p = spec.settings.parallel
    assert (p.zero, p.offload_optimizer, p.offload_param, p.pipeline_stages, p.micro_batch) == (
        best["zero_stage"], best["offload_optimizer"], best["offload_param"],
        best["pipeline_stages"], best["micro_batch"])
    assert spec.world_size == 8
    cfg = spec.deepspeed_config()
    # DeepSpeed's own DeepSpeedConfig accepts it, as rank 0 of the 8 processes
    ds = deepspeed_config(cfg, 8, p.pipeline_stages)
    assert ds.train_batch_size == spec.settings.train.batch_size
    assert cfg["zero_optimization"]["stage"] == best["zero_stage"]
    assert cfg["train_micro_batch_size_per_gpu"] == best["micro_batch"]


def test_rewrite_keeps_comments_and_formatting():
    from nnspec.plan.rewrite import rewrite_parallel

    text = ("model m() {\n  input x: float[4]\n  fc: linear(2)\n}\n\n"
            "# how to place it\nparallel {\n    zero = 0          # no ZeRO yet\n"
            "    stage_boundaries = [fc]\n    precision = bf16\n}\n# end\n")
    spec = nnspec.loads(text.replace("    stage_boundaries = [fc]\n", ""), name="m.nn")
    section = nnspec.loads(text.replace("    stage_boundaries = [fc]\n", "    partition = uniform\n"),
                           name="m.nn").program.sections["parallel"]
    src = text.replace("    stage_boundaries = [fc]\n", "    partition = uniform\n")
    new = rewrite_parallel(src, section, {"zero": 2, "micro_batch": 4, "offload_optimizer": "cpu",
                                          "activation_checkpointing": ("h.*",)})
    assert new == ("model m() {\n  input x: float[4]\n  fc: linear(2)\n}\n\n"
                   "# how to place it\nparallel {\n    zero = 2          # no ZeRO yet\n"
                   "    partition = uniform\n    precision = bf16\n    micro_batch = 4\n"
                   "    offload_optimizer = cpu\n    activation_checkpointing = [\"h.*\"]\n}\n"
                   "# end\n")
    assert spec.settings.parallel.zero == 0
    # a spec without a parallel section gets one at its end
    bare = "model m() {\n  input x: float[4]\n  fc: linear(2)\n}\n"
    assert rewrite_parallel(bare, None, {"zero": 1, "micro_batch": 2}) == (
        bare + "\nparallel {\n  zero = 1\n  micro_batch = 2\n}\n")


def test_own_profile_file(capsys, tmp_path):
    profile = json.loads((ROOT / "nnspec/plan/profiles/h100-80gb.json").read_text())
    profile.update(name="slow", peak_tflops={"fp32": 1, "bf16": 1, "fp16": 1})
    (tmp_path / "slow.json").write_text(json.dumps(profile))
    fast = plan_json(capsys, str(ROOT / "specs/lenet5.nn"), "--gpus", "2", "--profile",
                     "h100-80gb")["configs"][0]
    slow = plan_json(capsys, str(ROOT / "specs/lenet5.nn"), "--gpus", "2", "--profile",
                     str(tmp_path / "slow.json"))["configs"][0]
    assert slow["est_step_seconds"] > fast["est_step_seconds"]


@pytest.mark.parametrize("args,message", [
    (["--gpus", "8", "--gpu-memory", "80XB"], "--gpu-memory expects a size"),
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--gpus", "8", "--nodes", "0"], "--nodes must be at least 1"),
    (["--gpus", "8", "--profile", "a100-80"], "unknown profile `a100-80`"),
    (["--gpus", "8", "--profile", "missing.json"], "cannot read profile missing.json"),
    (["--gpus", "8", "--write"], "--write needs --auto"),
    (["--gpus", "8", "--cpu-memory", "lots"], "--cpu-memory expects a size"),
])
def test_bad_flags_exit_2_with_a_message(capsys, args, message):
    assert main(["plan", str(ROOT / "specs/lenet5.nn"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_profile_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "memory_gb": -1}')
    assert main(["plan", str(ROOT / "specs/lenet5.nn"), "--gpus", "2", "--profile",
                 str(bad)]) == 2
    err = capsys.readouterr().err
    assert "memory_gb" in err and "Traceback" not in err


def test_missing_gpus_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(ROOT / "specs/lenet5.nn")])
    assert exc.value.code == 2


def test_a_string_written_back_into_a_spec_reads_back_as_the_same_value():
    """`plan --write` writes setting values as spec text: quotes, backslashes and line breaks of
    every kind are escaped, so the rewritten spec holds the same string and no extra line."""
    from nnspec.lang.parse import parse
    from nnspec.plan.rewrite import format_value

    value = 'layer"1\\\n\r\u2028\x85 #'
    text = format_value([value, "layer.2"])
    assert "\n" not in text and "\u2028" not in text
    const = parse(f"const K = {text}\n").items[0]
    assert [item.value for item in const.value.items] == [value, "layer.2"]
