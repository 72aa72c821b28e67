"""The train + parallel combinations the DeepSpeed tests emit configs for: each has a golden
file golden/NAME.json and must be accepted by DeepSpeed itself."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from nnspec.lang.config import Call, ParallelSpec, TrainSpec


class Case(NamedTuple):
    train: TrainSpec
    parallel: ParallelSpec
    world_size: int
    total_steps: Optional[int] = None


def opt(name: str, **kwargs: Any) -> Call:
    return Call(name=name, kwargs=kwargs)


def case(world_size: int, total_steps: Optional[int] = None, train: Optional[dict] = None,
         **parallel: Any) -> Case:
    return Case(TrainSpec(**(train or {})), ParallelSpec(**parallel), world_size, total_steps)


CASES: dict[str, Case] = {
    # the defaults: adamw, fp32, ZeRO off, one process
    "defaults_ws1": case(1),
    "zero0_adam_wd_ws2": case(2, train={"optimizer": opt("adam", lr=3e-4, weight_decay=0.01,
                                                          betas=(0.9, 0.98))}),
    "zero1_sgd_ws2": case(2, zero=1, train={"optimizer": opt("sgd", lr=0.1, momentum=0.9,
                                                             nesterov=True)}),
    "zero2_bf16_accum_ws4": case(4, zero=2, precision="bf16", micro_batch=4, grad_accum=4,
                                 train={"batch_size": 64, "clip_grad_norm": 1.0}),
    "zero2_micro_derives_accum_ws2": case(2, zero=2, micro_batch=8, train={"batch_size": 64}),
    "zero3_bf16_ws2": case(2, zero=3, precision="bf16", comm_dtype="bf16"),
    "zero2_offload_optimizer_cpu_ws2": case(2, zero=2, offload_optimizer="cpu"),
    "zero3_offload_cpu_ws2": case(2, zero=3, offload_optimizer="cpu", offload_param="cpu",
                                  precision="bf16"),
    "zero3_offload_nvme_ws2": case(2, zero=3, offload_optimizer="nvme", offload_param="nvme",
                                   nvme_path="/local_nvme"),
    "zero1_offload_optimizer_nvme_ws2": case(2, zero=1, offload_optimizer="nvme",
                                             nvme_path="/local_nvme"),
    "pipeline2_ws2": case(2, zero=1, pipeline_stages=2, grad_accum=4, partition="uniform"),
    "pipeline2_dp2_checkpointing_ws4": case(4, pipeline_stages=2, grad_accum=4,
                                            activation_checkpointing=("block*",),
                                            precision="bf16"),
    "checkpointing_zero1_ws2": case(2, zero=1, activation_checkpointing=("encoder.layers.*",)),
    "comm_fp16_ws2": case(2, comm_dtype="fp16"),
    "fp16_gpus_ws8": case(8, zero=2, precision="fp16", train={"batch_size": 256,
                                                              "clip_grad_norm": 0.5}),
    "schedule_constant_warmup_ws2": case(2, train={"schedule": opt("constant", warmup=10)}),
    "schedule_warmup_linear_ws2": case(2, train={"steps": 1000, "schedule": opt(
        "warmup_linear", warmup=100)}),
    "schedule_warmup_cosine_epochs_ws2": case(2, total_steps=450, train={
        "epochs": 10, "schedule": opt("warmup_cosine", warmup=20, min_ratio=0.1)}),
    "schedule_warmup_cosine_no_warmup_ws1": case(1, train={"steps": 200, "schedule": opt(
        "warmup_cosine")}),
    "schedule_one_cycle_sgd_ws2": case(2, zero=1, train={
        "steps": 500, "optimizer": opt("sgd", lr=0.05, momentum=0.9),
        "schedule": opt("one_cycle", max_lr=0.2, pct_start=0.25)}),
    "schedule_reduce_on_plateau_ws2": case(2, train={"schedule": opt("reduce_on_plateau",
                                                                     patience=3)}),
    "adagrad_zero2_ws2": case(2, zero=2, train={"optimizer": opt("adagrad", lr=0.01,
                                                                 lr_decay=1e-4)}),
    "adagrad_offload_ws2": case(2, zero=2, offload_optimizer="cpu", train={
        "optimizer": opt("adagrad", lr=0.01, eps=1e-8)}),
    "client_rmsprop_zero0_ws2": case(2, train={"optimizer": opt("rmsprop", lr=1e-3,
                                                                alpha=0.9)}),
    "client_radam_zero2_offload_ws2": case(2, zero=2, offload_optimizer="cpu", train={
        "optimizer": opt("RAdam", lr=1e-3)}),
    "eval_every_sets_print_ws1": case(1, train={"eval_every": 25}),
}
