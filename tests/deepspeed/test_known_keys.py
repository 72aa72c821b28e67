"""The known-key set (nnspec.emit.deepspeed.DEEPSPEED_KEYS) is what DeepSpeed reads, and the
emitter produces nothing outside it."""
from __future__ import annotations

import inspect

import pytest

from nnspec.emit.deepspeed import DEEPSPEED_KEYS, FREE, STAGE3_ONLY_KEYS, check_keys

import deepspeed  # noqa: E402,F401  (a dependency of nnspec: never skipped)


def _string_constants(*modules) -> set[str]:
    return {v for m in modules for v in vars(m).values() if isinstance(v, str)}


def _fields(model) -> set[str]:
    """Field names and aliases of a DeepSpeed pydantic config, without deprecated ones."""
    out = set()
    for name, f in model.model_fields.items():
        if (f.json_schema_extra or {}).get("deprecated"):
            continue
        out.add(name)
        if f.alias:
            out.add(f.alias)
    return out


def test_top_level_keys_are_deepspeed_constants():
    from deepspeed.runtime import config, constants
    from deepspeed.runtime.activation_checkpointing import config as act
    from deepspeed.runtime import precision_config
    from deepspeed.runtime.zero import config as zero
    names = _string_constants(constants, config, act, precision_config, zero)
    pipeline_src = inspect.getsource(config.get_pipeline_config)
    init_src = inspect.getsource(config.DeepSpeedConfig._initialize_params)
    from deepspeed.runtime.tensor_parallel import config as tensor
    tensor_src = inspect.getsource(tensor.get_tensor_parallel_config)
    for key in DEEPSPEED_KEYS:
        assert key in names or f'"{key}"' in pipeline_src or f"'{key}'" in tensor_src, key
    # and DeepSpeedConfig reads each: by its constant's getter or block parser
    getters = ["get_train_batch_size", "get_train_micro_batch_size_per_gpu",
               "get_gradient_accumulation_steps", "get_steps_per_print", "get_gradient_clipping",
               "get_communication_data_type", "get_zero_allow_untested_optimizer",
               "get_zero_force_ds_cpu_optimizer", "get_optimizer_name", "get_optimizer_params",
               "get_scheduler_name", "get_scheduler_params", "get_zero_config",
               "get_bfloat16_config", "get_float16_config", "get_pipeline_config",
               "DeepSpeedActivationCheckpointingConfig"]
    for g in getters:
        assert g + "(param_dict" in init_src, g


def test_optimizer_and_scheduler_blocks():
    from deepspeed.runtime import constants
    assert set(DEEPSPEED_KEYS["optimizer"]) == {constants.TYPE, constants.OPTIMIZER_PARAMS}
    assert set(DEEPSPEED_KEYS["scheduler"]) == {constants.TYPE, constants.SCHEDULER_PARAMS}
    assert DEEPSPEED_KEYS["optimizer"]["params"] == FREE


def test_zero_keys_are_fields():
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig
    from deepspeed.runtime.zero.offload_config import (DeepSpeedZeroOffloadOptimizerConfig,
                                                       DeepSpeedZeroOffloadParamConfig)
    zero = DEEPSPEED_KEYS["zero_optimization"]
    assert set(zero) <= _fields(DeepSpeedZeroConfig)
    assert set(zero["offload_optimizer"]) <= _fields(DeepSpeedZeroOffloadOptimizerConfig)
    assert set(zero["offload_param"]) <= _fields(DeepSpeedZeroOffloadParamConfig)
    assert set(STAGE3_ONLY_KEYS) <= set(zero)


def test_precision_keys_are_fields():
    from deepspeed.runtime.precision_config import DeepSpeedBF16Config, DeepSpeedFP16Config
    assert set(DEEPSPEED_KEYS["bf16"]) <= _fields(DeepSpeedBF16Config)
    assert set(DEEPSPEED_KEYS["fp16"]) <= _fields(DeepSpeedFP16Config)


def test_tensor_parallel_keys_are_fields():
    from deepspeed.runtime.tensor_parallel.config import TPTrainingConfig
    assert set(DEEPSPEED_KEYS["tensor_parallel"]) <= _fields(TPTrainingConfig)


def test_pipeline_keys_are_read_by_the_pipeline_engine():
    from deepspeed.runtime.pipe.engine import PipelineEngine
    src = inspect.getsource(PipelineEngine.__init__)
    for key in DEEPSPEED_KEYS["pipeline"]:
        assert f"pipeline['{key}']" in src or f"pipeline.get('{key}')" in src, key
    # what nnspec leaves out on purpose: in the defaults, read by nothing
    from deepspeed.runtime.config import get_pipeline_config
    engine_src = inspect.getsource(__import__("deepspeed.runtime.pipe.engine",
                                              fromlist=["x"]))
    for ignored in ("stages", "partition", "seed_layers"):
        assert ignored in get_pipeline_config({})
        assert f"pipeline['{ignored}']" not in engine_src


def test_activation_checkpointing_keys():
    from deepspeed.runtime.activation_checkpointing.config import ACT_CHKPT_DEFAULT
    assert set(DEEPSPEED_KEYS["activation_checkpointing"]) <= set(ACT_CHKPT_DEFAULT)


def test_check_keys_catches_strays():
    assert check_keys({"train_batch_sze": 8}) == ["train_batch_sze"]
    assert check_keys({"zero_optimization": {"stage": 1, "stag": 1}}) == ["zero_optimization.stag"]
    assert check_keys({"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}) \
        == ["zero_optimization.offload_param"]
    assert check_keys({"bf16": True}) == ["bf16"]
    assert check_keys({"train_batch_size": {"x": 1}}) == ["train_batch_size"]
    assert check_keys({"optimizer": {"type": "SGD", "params": {"anything": 1}}}) == []
    assert check_keys({"pipeline": {"stages": 2}}) == ["pipeline.stages"]
    # scheduler params are the class's constructor arguments (optim_table, from its signature)
    assert check_keys({"scheduler": {"type": "WarmupLR", "params": {
        "warmup_num_steps": 5, "warmup_steps": 5}}}) == ["scheduler.params.warmup_steps"]
    assert check_keys({"scheduler": {"type": "CosineLR", "params": {}}}) == ["scheduler.type"]
