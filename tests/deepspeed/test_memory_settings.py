"""The config settings that bound a rank's memory: ZeRO-3's gather and bucket sizes follow the
model's largest layer (emit.deepspeed.zero3_limits), DeepSpeed accepts them and `nnspec plan`
counts the same sizes; a bf16 pipeline frees each 16-bit gradient once accumulated."""
from __future__ import annotations

import pytest

import nnspec
from nnspec.emit.deepspeed import ZERO3_DEFAULTS, check_keys, zero3_limits
from nnspec.ir import largest_layer
from nnspec.plan.memory import temporary_buffers

from .dsvalidate import deepspeed_config

MLP = """model mlp(hidden = {hidden}) {{
  input x: float[64]
  fc1: linear(hidden)
  relu
  fc2: linear(hidden)
  head: linear(10)
}}
train {{
  optimizer = adamw(lr = 1e-3)
  batch_size = 8
  steps = 4
}}
"""


def spec(hidden: int, zero: int, stages: int = 1, precision: str = "bf16"):
    return nnspec.loads(MLP.format(hidden=hidden), sets={
        "parallel.zero": zero, "parallel.precision": precision, "parallel.pipeline_stages": stages,
        "parallel.grad_accum": 2}, world_size=2)


def test_rule_for_a_layer_of_a_200m_model():
    layer = 7100 * 7100 + 7100
    assert zero3_limits(layer) == {
        "stage3_max_live_parameters": 2 * layer,        # the layer and the prefetched next one
        "stage3_prefetch_bucket_size": ZERO3_DEFAULTS["stage3_prefetch_bucket_size"],  # capped
        "stage3_max_reuse_distance": layer,
        "stage3_param_persistence_threshold": ZERO3_DEFAULTS["stage3_param_persistence_threshold"],
        "reduce_bucket_size": layer,
        "sub_group_size": layer,
    }


def test_capped_at_deepspeed_defaults_and_floored_at_its_minimum():
    assert zero3_limits(10 ** 12) == ZERO3_DEFAULTS
    assert zero3_limits(0) == {**{k: 0 for k in ZERO3_DEFAULTS}, "reduce_bucket_size": 1}
    small = zero3_limits(4_000)
    assert small["stage3_param_persistence_threshold"] == 40  # biases of 4k-parameter layers
    assert small["stage3_max_live_parameters"] == 8_000


def test_zero3_config_is_scaled_to_the_largest_layer_and_accepted():
    s = spec(300, zero=3)
    layer = largest_layer(s.ir)
    assert layer == 300 * 300 + 300  # fc2
    cfg = s.deepspeed_config(2)
    zero = cfg["zero_optimization"]
    assert {k: zero[k] for k in ZERO3_DEFAULTS} == zero3_limits(layer)
    assert check_keys(cfg) == []
    ds = deepspeed_config(cfg, 2).zero_config
    assert (ds.max_live_parameters, ds.prefetch_bucket_size, ds.max_reuse_distance,
            ds.param_persistence_threshold, ds.reduce_bucket_size, ds.sub_group_size) == (
        2 * layer, layer, layer, layer // 100, layer, layer)


@pytest.mark.parametrize("zero", [0, 1, 2])
def test_other_stages_keep_deepspeed_defaults(zero):
    zero_block = spec(300, zero=zero).deepspeed_config(2)["zero_optimization"]
    assert not set(ZERO3_DEFAULTS) & set(zero_block)


def test_stage3_keys_refused_below_stage_3():
    cfg = spec(300, zero=2).deepspeed_config(2)
    cfg["zero_optimization"]["stage3_max_live_parameters"] = 10
    assert check_keys(cfg) == ["zero_optimization.stage3_max_live_parameters"]


def test_plan_buffers_use_the_emitted_sizes():
    params, dp = 10 ** 8, 2
    for layer in (10 ** 5, 10 ** 7, 10 ** 9):
        limits = zero3_limits(layer)
        expected = 2 * (limits["reduce_bucket_size"] + limits["stage3_prefetch_bucket_size"]) \
            + 2 * params // dp
        assert temporary_buffers(params, layer, zero=3, data_parallel=dp,
                                 precision="bf16") == expected


@pytest.mark.parametrize("zero, stages, precision, immediate", [
    (0, 2, "bf16", True),     # DeepSpeed's BF16_Optimizer
    (1, 2, "bf16", False),    # ZeRO's own optimizer
    (0, 1, "bf16", False),    # no pipeline: the unfused 16-bit optimizer
    (0, 2, "fp32", False)])
def test_bf16_pipeline_frees_16bit_gradients_once_accumulated(zero, stages, precision, immediate):
    cfg = spec(300, zero, stages, precision).deepspeed_config(2)
    assert cfg.get("bf16", {}).get("immediate_grad_update", False) is immediate
    assert check_keys(cfg) == []
    ds = deepspeed_config(cfg, 2, pipeline_stages=stages)
    assert ds.bfloat16_config.immediate_grad_update is immediate
