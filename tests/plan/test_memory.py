"""The plan's model-state figures against DeepSpeed's own estimators, and its parameter counts
against the compiler's and DeepSpeed's.

DeepSpeed's estimators (0.19): `estimate_zero2_model_states_mem_needs(total_params,
num_gpus_per_node, num_nodes, cpu_offload, additional_buffer_factor)` -> (cpu bytes per machine,
gpu bytes per GPU) and `estimate_zero3_model_states_mem_needs(total_params, largest_layer_params,
num_gpus_per_node, num_nodes, cpu_offload, cpu_offload_params, zero_init,
additional_buffer_factor)` -> (cpu, gpu, largest layer bytes). Both assume mixed-precision Adam;
nnspec constructs a ZeRO-3 model inside zero.Init (nnspec/train/construct.py), so zero_init is
True at ZeRO-3; below it every process builds the whole model before initialize.
"""
from __future__ import annotations

import pytest

import nnspec
from nnspec.plan import Choice, Cluster, Model, evaluate, load_profile
from nnspec.plan.memory import ADDITIONAL_BUFFER_FACTOR, model_states
from nnspec.plan.search import with_settings

from ..conftest import ROOT

pytest.importorskip("deepspeed")
from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs  # noqa: E402
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs  # noqa: E402

SPECS = ["lenet5", "resnet18", "bert_base", "gpt2_small", "gpt3_1_3b", "gpt3_13b"]
LAYOUTS = [(1, 1), (2, 1), (8, 1), (4, 2), (8, 4)]  # (GPUs per machine, machines)
BIG = 10 ** 13
PROFILE = load_profile("a100-80gb")


@pytest.fixture(scope="module")
def models():
    """Each spec as mixed-precision (bf16) AdamW, as DeepSpeed's estimators assume."""
    out = {}
    for name in SPECS:
        spec = nnspec.load(ROOT / "specs" / f"{name}.nn", max_params=BIG)
        assert spec.settings.train.optimizer.name in ("adam", "adamw")
        parallel = with_settings(spec.settings.parallel, precision="bf16", data_parallel="auto",
                                 micro_batch=None, grad_accum=None, pipeline_stages=None,
                                 activation_checkpointing=None)
        out[name] = spec, Model(spec.ir, spec.settings.train, parallel)
    return out


def plan(model: Model, zero: int, gpus: int, nodes: int, offload_opt="none", offload_param="none"):
    cluster = Cluster(gpus, nodes, 80 * 10 ** 9)
    return evaluate(model, Choice(zero, offload_opt, offload_param, 1, 1, 1, ()), cluster, PROFILE)


def states(p: dict) -> int:
    gpu = p["per_gpu_bytes"]
    return gpu["params"] + gpu["grads"] + gpu["optimizer"]


def close(a: float, b: float, rel: float = 0.01) -> bool:
    return abs(a - b) <= rel * max(abs(b), 1)


@pytest.mark.parametrize("gpus,nodes", LAYOUTS)
@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("name", SPECS)
def test_zero2_matches_deepspeed(models, name, gpus, nodes, offload):
    spec, model = models[name]
    total = spec.summary()["params"]
    cpu, gpu = estimate_zero2_model_states_mem_needs(
        total, num_gpus_per_node=gpus, num_nodes=nodes, cpu_offload=offload,
        additional_buffer_factor=ADDITIONAL_BUFFER_FACTOR)
    p = plan(model, 2, gpus, nodes, "cpu" if offload else "none")
    assert close(states(p), gpu), (states(p), gpu)
    if nodes == 1 or not offload:
        # with offload DeepSpeed scales the CPU figure with the GPUs of every machine
        # (max(4 * total_gpus, 16)); the plan counts the GPUs of one machine, whose processes
        # each build the fp32 model before initialize
        assert close(p["per_cpu_bytes"], cpu), (p["per_cpu_bytes"], cpu)


@pytest.mark.parametrize("gpus,nodes", LAYOUTS)
@pytest.mark.parametrize("offload", ["none", "optimizer", "both"])
@pytest.mark.parametrize("name", SPECS)
def test_zero3_matches_deepspeed(models, name, gpus, nodes, offload):
    spec, model = models[name]
    total = spec.summary()["params"]
    largest = model.costs.largest_layer
    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
        total, largest, num_gpus_per_node=gpus, num_nodes=nodes,
        cpu_offload=offload != "none", cpu_offload_params=offload == "both", zero_init=True,
        additional_buffer_factor=ADDITIONAL_BUFFER_FACTOR)
    p = plan(model, 3, gpus, nodes, "none" if offload == "none" else "cpu",
             "cpu" if offload == "both" else "none")
    assert close(states(p), gpu), (states(p), gpu)
    assert close(p["per_cpu_bytes"], cpu), (p["per_cpu_bytes"], cpu)


def test_zero3_with_zero_init_matches_deepspeed():
    for offload, offload_param in [(True, False), (True, True), (False, False)]:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            10 ** 9, 10 ** 7, num_gpus_per_node=8, num_nodes=2, cpu_offload=offload,
            cpu_offload_params=offload_param, zero_init=True)
        from nnspec.plan.memory import per_node_cpu_bytes

        s = model_states(10 ** 9, 10 ** 7, zero=3, data_parallel=16, precision="bf16",
                         optimizer_bytes=8, offload_optimizer="cpu" if offload else "none",
                         offload_param="cpu" if offload_param else "none")
        assert close(s.gpu, gpu)
        assert close(per_node_cpu_bytes(s, params=10 ** 9, largest_layer=10 ** 7, gpus_per_node=8,
                                        zero_init=True), cpu)


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "gpt2_small"])
def test_counts_are_the_compilers_and_deepspeeds(models, name):
    """One source of truth: the plan's parameters are spec.summary()'s, and DeepSpeed's own
    model_to_params on the built module gives the same total and largest layer."""
    from deepspeed.runtime.zero.stage3 import model_to_params

    spec, model = models[name]
    assert model.costs.params == spec.summary()["params"]
    assert model.costs.flops == spec.summary()["flops"]
    assert model_to_params(spec.build()) == (model.costs.params, model.costs.largest_layer)


def test_bytes_per_parameter_by_precision_and_optimizer():
    """2+2+12 for mixed-precision Adam (plus the fp32 gradient copy ZeRO 0 flattens), 4+4+8 for
    fp32 Adam, 4+4+4 for SGD with momentum, 4+4+0 without; a ZeRO-1 partition over 4 ranks."""
    def per_param(precision, k, zero=0, d=1):
        s = model_states(1000, 10, zero=zero, data_parallel=d, precision=precision,
                         optimizer_bytes=k)
        return s.params / 1000, s.grads / 1000, s.optimizer / 1000

    assert per_param("fp32", 8) == (4, 4, 8)
    assert per_param("fp32", 4) == (4, 4, 4)
    assert per_param("fp32", 0) == (4, 4, 0)
    assert per_param("bf16", 8) == (2, 2 + 4, 12)
    assert per_param("bf16", 4) == (2, 2 + 4, 8)
    assert per_param("bf16", 8, zero=1, d=4) == (2, 2, 3)
    assert per_param("fp32", 8, zero=2, d=4) == (4, 2, 3)
    assert per_param("bf16", 8, zero=3, d=4) == (0.5 + 0.02, 1 + 0.02, 3)


def test_optimizer_of_the_spec_sets_the_state_bytes():
    from nnspec.plan.memory import optimizer_state_bytes

    assert optimizer_state_bytes("adamw", {})[0] == 8
    assert optimizer_state_bytes("adam", {"amsgrad": True})[0] == 12
    assert optimizer_state_bytes("sgd", {"momentum": 0.9})[0] == 4
    assert optimizer_state_bytes("sgd", {})[0] == 0
    spec = nnspec.loads(
        "model m() {\n  input x: float[100]\n  fc: linear(100)\n}\n"
        "train {\n  optimizer = sgd(lr=0.1, momentum=0.9)\n}\n", name="m.nn")
    model = Model(spec.ir, spec.settings.train, spec.settings.parallel)
    p = evaluate(model, Choice(0, "none", "none", 1, 1, 1, ()), Cluster(1), PROFILE)
    n = spec.summary()["params"]
    assert (p["per_gpu_bytes"]["params"], p["per_gpu_bytes"]["grads"],
            p["per_gpu_bytes"]["optimizer"]) == (4 * n, 4 * n, 4 * n)


def test_construction_per_rank_is_the_shard_or_the_stage(models):
    """What one rank allocates to construct its model: the whole fp32 model without ZeRO-3, the
    shard plus the largest layer inside zero.Init, a stage plus the largest layer in a pipeline;
    the 13B shape on 8 GPUs no longer needs 8 whole fp32 copies per machine at ZeRO-3."""
    spec, model = models["gpt3_13b"]
    total, largest = spec.summary()["params"], model.costs.largest_layer
    cluster = Cluster(8, 1, 80 * 10 ** 9, 256 * 10 ** 9)
    zero0 = evaluate(model, Choice(0, "none", "none", 1, 1, 1, ()), cluster, PROFILE)
    zero3 = evaluate(model, Choice(3, "none", "none", 1, 1, 1, ()), cluster, PROFILE)
    assert zero0["construct_bytes_per_rank"] == 4 * total
    # the shard in the training precision (bf16 here), the largest layer in fp32 and cast
    assert zero3["construct_bytes_per_rank"] == 2 * -(-(total - largest) // 8) + 6 * largest
    assert zero0["per_cpu_bytes"] > cluster.cpu_memory >= zero3["per_cpu_bytes"]
    assert zero3["per_cpu_bytes"] == int(4 * largest * 8 * ADDITIONAL_BUFFER_FACTOR)
    piped = evaluate(model, Choice(0, "none", "none", 4, 1, 8, ()), cluster, PROFILE)
    stages = piped["stages"]
    for st in stages:  # an earlier stage's layers are made and released one at a time first
        earlier = [u.largest_layer for _, units in model.stages(4)[:st["stage"]] for u in units]
        assert st["construct_bytes_per_rank"] == 4 * max(st["params"], max(earlier, default=0))
    assert stages[0]["construct_bytes_per_rank"] == 4 * stages[0]["params"]
    assert piped["construct_bytes_per_rank"] == max(st["construct_bytes_per_rank"]
                                                    for st in stages) < 0.4 * 4 * total
