"""check_parallel: every rule, with its exact message and help."""
from __future__ import annotations

import pytest

from nnspec.lang.config import (
    SCHEDULE_ARGS, SCHEDULES, Call, Layout, ParallelConfigError, ParallelSpec, Problem, TrainSpec,
    check_parallel, check_train, resolve_layout, total_steps_for
)
from nnspec.emit.deepspeed import client_optimizer, emit_deepspeed_config

E, W = "error", "warning"


def C(name, *args, **kwargs):
    return Call(name=name, args=args, kwargs=kwargs)


# (id, train settings, parallel settings, world size, the exact problems)
RULES = [
    ("batch_triple", dict(batch_size=64), dict(micro_batch=8, grad_accum=4), 4, [
        ("micro_batch", "batch_size 64 != micro_batch 8 x grad_accum 4 x data-parallel 4 = 128",
         "set micro_batch = 4, or grad_accum = 2, or batch_size = 128", E)]),
    ("batch_triple_one_fix", dict(batch_size=60), dict(micro_batch=8, grad_accum=4), 4, [
        ("micro_batch", "batch_size 60 != micro_batch 8 x grad_accum 4 x data-parallel 4 = 128",
         "set batch_size = 128", E)]),
    ("micro_batch_not_dividing", dict(batch_size=60), dict(micro_batch=8), 4, [
        ("micro_batch", "batch_size 60 is not divisible by micro_batch 8 x data-parallel 4 = 32",
         "set batch_size = 32 or 64, or a micro_batch that divides batch_size / data-parallel",
         E)]),
    ("micro_batch_not_dividing_ranks", dict(batch_size=62), dict(micro_batch=8), 4, [
        ("micro_batch", "batch_size 62 is not divisible by micro_batch 8 x data-parallel 4 = 32",
         "set batch_size = 32 or 64", E)]),
    ("grad_accum_not_dividing", dict(batch_size=64), dict(grad_accum=3), 4, [
        ("grad_accum", "batch_size 64 is not divisible by grad_accum 3 x data-parallel 4 = 12",
         "set batch_size = 60 or 72, or grad_accum to a divisor of 16 (batch_size / "
         "data-parallel)", E)]),
    ("batch_not_dividing_ranks", dict(batch_size=30), dict(), 4, [
        ("batch_size", "batch_size 30 is not divisible by grad_accum 1 x data-parallel 4 = 4",
         "set batch_size = 28 or 32", E)]),
    ("batch_smaller_than_ranks", dict(batch_size=2), dict(), 4, [
        ("batch_size", "batch_size 2 is not divisible by grad_accum 1 x data-parallel 4 = 4",
         "set batch_size = 4", E)]),
    ("pipeline_stages_divide_world", dict(), dict(pipeline_stages=3), 4, [
        ("pipeline_stages", "pipeline_stages 3 does not divide the world size 4",
         "launch a multiple of 3 processes, or set pipeline_stages to a divisor of 4 (1, 2, 4)",
         E)]),
    ("data_parallel_times_stages", dict(), dict(data_parallel=3), 4, [
        ("data_parallel", "data_parallel 3 x pipeline_stages 1 = 3 != world size 4",
         "set data_parallel = 4, or data_parallel = auto", E)]),
    ("data_parallel_times_stages_pipeline", dict(), dict(data_parallel=4, pipeline_stages=2,
                                                         grad_accum=2), 4, [
        ("data_parallel", "data_parallel 4 x pipeline_stages 2 = 8 != world size 4",
         "set data_parallel = 2, or data_parallel = auto", E)]),
    ("zero2_pipeline", dict(), dict(zero=2, pipeline_stages=2, grad_accum=2), 4, [
        ("zero", "zero 2 cannot be combined with pipeline_stages 2: DeepSpeed's pipeline engine "
         "refuses ZeRO-2 and ZeRO-3", "set zero = 1 (or 0), or pipeline_stages = 1", E)]),
    ("zero3_pipeline", dict(), dict(zero=3, pipeline_stages=2, grad_accum=2), 4, [
        ("zero", "zero 3 cannot be combined with pipeline_stages 2: DeepSpeed's pipeline engine "
         "refuses ZeRO-2 and ZeRO-3", "set zero = 1 (or 0), or pipeline_stages = 1", E)]),
    ("offload_param_needs_zero3", dict(), dict(zero=2, offload_param="cpu"), 2, [
        ("offload_param", "offload_param cpu needs zero 3, but zero is 2",
         "set zero = 3, or offload_param = none (only ZeRO-3 partitions parameters; other stages "
         "would ignore the setting)", E)]),
    ("offload_optimizer_needs_zero", dict(), dict(offload_optimizer="cpu"), 2, [
        ("offload_optimizer", "offload_optimizer cpu needs zero 1, 2 or 3, but zero is 0",
         "set zero = 1 or higher, or offload_optimizer = none", E)]),
    ("nvme_needs_path", dict(), dict(zero=3, offload_optimizer="nvme", offload_param="nvme"), 2, [
        ("offload_optimizer", "offload_optimizer nvme needs nvme_path",
         'set nvme_path = "/path/to/nvme" (a folder on a fast local disk, the same on every '
         'machine)', E),
        ("offload_param", "offload_param nvme needs nvme_path",
         'set nvme_path = "/path/to/nvme" (a folder on a fast local disk, the same on every '
         'machine)', E)]),
    ("nvme_path_unused", dict(), dict(nvme_path="/x"), 2, [
        ("nvme_path", "nvme_path is set but nothing is offloaded to nvme",
         "set offload_optimizer or offload_param to nvme, or remove nvme_path", W)]),
    ("stage_boundaries_without_pipeline", dict(), dict(stage_boundaries=("a",)), 2, [
        ("stage_boundaries", "stage_boundaries needs pipeline_stages > 1",
         "set pipeline_stages = 2, or remove stage_boundaries", E)]),
    ("stage_boundaries_count", dict(), dict(pipeline_stages=2, grad_accum=2,
                                            stage_boundaries=("a", "b")), 2, [
        ("stage_boundaries", "stage_boundaries names 2 layers, but pipeline_stages 2 needs 1 "
         "(the first layer of each stage after the first)",
         "name 1 layer, or set pipeline_stages = 3", E)]),
    ("partition_and_stage_boundaries", dict(), dict(pipeline_stages=2, grad_accum=2,
                                                    stage_boundaries=("a",),
                                                    partition="uniform"), 2, [
        ("partition", "partition and stage_boundaries both place the pipeline stages",
         "keep one of them", E)]),
    ("partition_without_pipeline", dict(), dict(partition="uniform"), 2, [
        ("partition", "partition has no effect with pipeline_stages 1",
         "remove partition, or set pipeline_stages > 1", W)]),
    ("partition_unknown", dict(), dict(partition="balanced"), 1, [
        ("partition", "unknown partition `balanced`", "use parameters, uniform or type:REGEX",
         E)]),
    ("partition_bad_regex", dict(), dict(partition="type:(", pipeline_stages=2,
                                         grad_accum=2), 2, [
        ("partition", "partition type:(: bad regular expression (missing ), unterminated "
         "subpattern at position 0)", None, E)]),
    ("pipeline_bubbles", dict(), dict(pipeline_stages=2), 2, [
        ("grad_accum", "grad_accum 1 < pipeline_stages 2: each step has fewer micro-batches "
         "than stages, so stages sit idle", "use grad_accum >= 2 (a smaller micro_batch)", W)]),
    ("fp16_on_cpu", dict(), dict(precision="fp16"), 2, [
        ("precision", "precision fp16 needs GPUs: DeepSpeed's CPU accelerator refuses fp16 "
         'training ("Type fp16 is not supported on your device")',
         "use precision bf16 to train on CPUs", W)]),
    ("comm_dtype_without_data_parallel", dict(), dict(comm_dtype="fp16"), 1, [
        ("comm_dtype", "comm_dtype fp16 has no effect: the data-parallel degree is 1, so no "
         "gradients are all-reduced", "remove comm_dtype, or train with more data-parallel ranks",
         W)]),
    ("comm_fp16_bf16_training", dict(), dict(comm_dtype="fp16", precision="bf16"), 2, [
        ("comm_dtype", "comm_dtype fp16 with precision bf16: bf16 gradients outside fp16's "
         "range (about 6e-8 to 65504) flush to zero or overflow, and bf16 training has no loss "
         "scaling to prevent it", "use comm_dtype bf16 or fp32", W)]),
    ("comm_bf16_fp16_training", dict(), dict(comm_dtype="bf16", precision="fp16"), 2, [
        ("precision", "precision fp16 needs GPUs: DeepSpeed's CPU accelerator refuses fp16 "
         'training ("Type fp16 is not supported on your device")',
         "use precision bf16 to train on CPUs", W),
        ("comm_dtype", "comm_dtype bf16 with precision fp16: bf16 keeps 8 bits of mantissa to "
         "fp16's 11, so the all-reduce rounds the gradients more coarsely than they were "
         "computed", "use comm_dtype fp16 or fp32", W)]),
    ("zero_without_data_parallel", dict(), dict(zero=2), 1, [
        ("zero", "zero 2 partitions nothing: the data-parallel degree is 1",
         "train with more data-parallel ranks, offload to cpu, or set zero = 0", W)]),
    ("optimizer_unknown", dict(optimizer=C("adamm")), dict(), 1, [
        ("optimizer", "unknown optimizer `adamm`", "did you mean `adam` or `radam` or `nadam`?",
         E)]),
    ("optimizer_refused", dict(optimizer=C("lbfgs")), dict(), 1, [
        ("optimizer", "optimizer lbfgs cannot be used: LBFGS needs a closure that re-evaluates "
         "the loss on every step", "use adamw, adam, sgd or adagrad", E)]),
    ("optimizer_argument", dict(optimizer=C("sgd", lr=0.1, momentun=0.9)), dict(), 1, [
        ("optimizer", "optimizer sgd has no argument `momentun`", "did you mean `momentum`?", E)]),
    ("optimizer_max_grad_norm", dict(optimizer=C("adamw", max_grad_norm=1.0)), dict(), 1, [
        ("optimizer", "optimizer adamw has no argument `max_grad_norm`",
         "gradient clipping is the train setting clip_grad_norm", E)]),
    ("optimizer_value", dict(optimizer=C("adamw", lr=-1.0)), dict(), 1, [
        ("optimizer", "optimizer adamw: lr must be a number >= 0, got -1.0",
         "AdamW's default is lr=0.001", E)]),
    ("optimizer_values", dict(optimizer=C("adam", betas=(0.9, 1.0), eps="tiny")), dict(), 1, [
        ("optimizer", "optimizer adam: betas must be a pair of numbers each in [0, 1), got "
         "(0.9, 1.0)", "Adam's default is betas=(0.9, 0.999)", E),
        ("optimizer", "optimizer adam: eps must be a number, got 'tiny'",
         "Adam's default is eps=1e-08", E)]),
    ("optimizer_nesterov", dict(optimizer=C("sgd", lr=0.1, nesterov=True)), dict(), 1, [
        ("optimizer", "optimizer sgd: nesterov needs a momentum > 0 and dampening 0",
         "set momentum (e.g. 0.9), or nesterov = false", E)]),
    ("optimizer_positional", dict(optimizer=C("sgd", 0.1)), dict(), 1, [
        ("optimizer", "optimizer sgd takes keyword arguments only, got 1 positional",
         "write sgd(lr=...) with the names of SGD's arguments", E)]),
    ("adagrad_offload_arguments", dict(optimizer=C("adagrad", lr_decay=0.1)),
     dict(zero=1, offload_optimizer="cpu"), 2, [
        ("optimizer", "optimizer adagrad has no argument `lr_decay` with offload_optimizer cpu: "
         "DeepSpeed then uses its CPU Adagrad, which takes lr, eps and weight_decay only",
         "remove `lr_decay`, or set offload_optimizer = none", E)]),
    ("schedule_unknown", dict(schedule=C("cosine")), dict(), 1, [
        ("schedule", "unknown schedule `cosine`", "did you mean `warmup_cosine`?", E)]),
    ("schedule_argument", dict(schedule=C("warmup_cosine", warmpu=3)), dict(), 1, [
        ("schedule", "schedule warmup_cosine has no argument `warmpu`", "did you mean `warmup`?",
         E)]),
    ("schedule_value", dict(schedule=C("one_cycle", pct_start=1.5)), dict(), 1, [
        ("schedule", "schedule one_cycle: pct_start must be a number between 0 and 1, got 1.5",
         None, E)]),
    ("schedule_warmup_too_long", dict(steps=100, schedule=C("warmup_linear", warmup=100)),
     dict(), 1, [
        ("schedule", "schedule warmup_linear: warmup 100 >= steps 100, so the lr never reaches "
         "its peak", "use a warmup below 100", E)]),
    ("schedule_positional", dict(schedule=C("warmup_linear", 3)), dict(), 1, [
        ("schedule", "schedule warmup_linear takes keyword arguments only, got 1 positional",
         "write warmup_linear(warmup=...)", E)]),
]


@pytest.mark.parametrize("train,parallel,world_size,expected", [r[1:] for r in RULES],
                         ids=[r[0] for r in RULES])
def test_rule(train, parallel, world_size, expected):
    got = check_parallel(TrainSpec(**train), ParallelSpec(**parallel), world_size)
    assert [tuple(p) for p in got] == expected


@pytest.mark.parametrize("train,parallel,world_size,expected", [r[1:] for r in RULES],
                         ids=[r[0] for r in RULES])
def test_errors_stop_the_emitter(train, parallel, world_size, expected):
    t, p = TrainSpec(**train), ParallelSpec(**parallel)
    errors = [Problem(*e) for e in expected if e[3] == E]
    if errors:
        with pytest.raises(ParallelConfigError) as info:
            emit_deepspeed_config(t, p, world_size, total_steps=1000)
        assert info.value.problems == errors
    else:
        emit_deepspeed_config(t, p, world_size, total_steps=1000)


def test_valid_settings_have_no_problems():
    for world_size in (2, 4, 8):
        assert check_parallel(TrainSpec(), ParallelSpec(), world_size) == []
    assert check_parallel(TrainSpec(batch_size=64), ParallelSpec(
        zero=1, pipeline_stages=2, grad_accum=4, micro_batch=4, partition="type:Linear"), 8) == []


def test_schedule_table_covers_every_schedule():
    assert tuple(SCHEDULE_ARGS) == SCHEDULES


def test_problem_sections():
    assert Problem("micro_batch", "m").section == "parallel"
    assert Problem("batch_size", "m").section == "train"
    assert Problem("optimizer", "m").section == "train"


def test_layout():
    t = TrainSpec(batch_size=64)
    assert resolve_layout(t, ParallelSpec(), 4) == Layout(4, 4, 1, 64, 16, 1)
    # micro_batch without grad_accum: grad_accum is derived, as DeepSpeed does
    assert resolve_layout(t, ParallelSpec(micro_batch=4), 4) == Layout(4, 4, 1, 64, 4, 4)
    assert resolve_layout(t, ParallelSpec(grad_accum=2), 4) == Layout(4, 4, 1, 64, 8, 2)
    assert resolve_layout(t, ParallelSpec(pipeline_stages=2, grad_accum=4), 8) == \
        Layout(8, 4, 2, 64, 4, 4)
    assert resolve_layout(t, ParallelSpec(data_parallel=2, pipeline_stages=2), 4).data_parallel \
        == 2
    with pytest.raises(ParallelConfigError, match="pipeline_stages 3 does not divide"):
        resolve_layout(t, ParallelSpec(pipeline_stages=3), 4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="world size"):
            check_parallel(t, ParallelSpec(), bad)


def test_client_optimizer():
    assert client_optimizer(TrainSpec()) is None
    assert client_optimizer(TrainSpec(optimizer=C("Adagrad"))) is None
    assert client_optimizer(TrainSpec(optimizer=C("rmsprop", lr=0.01, alpha=0.9))) == \
        ("RMSprop", {"lr": 0.01, "alpha": 0.9})
    assert client_optimizer(TrainSpec(optimizer=C("nadam", betas=(0.9, 0.99)))) == \
        ("NAdam", {"betas": [0.9, 0.99]})


def test_total_steps_for():
    assert total_steps_for(TrainSpec(steps=70, epochs=3), 1000) == 70
    assert total_steps_for(TrainSpec(epochs=3, batch_size=64), 1000) == 3 * 16
    assert total_steps_for(TrainSpec(batch_size=64), 1024) == 16


def test_warmup_longer_than_total_steps():
    # 2 epochs of digits are 46 steps: check_train accepts 42, the emitter told 40 refuses it
    train = TrainSpec(epochs=2, schedule=C("warmup_cosine", warmup=42))
    with pytest.raises(ValueError, match="warmup 42 >= total steps 40"):
        emit_deepspeed_config(train, ParallelSpec(), 1, total_steps=40)


def test_warmup_longer_than_the_run_of_a_known_data_set():
    """Found by the fuzzer: check passed, then compile's emitter raised (epochs, no steps)."""
    train = TrainSpec(epochs=2, schedule=C("warmup_cosine", warmup=50))
    problems = [p for p in check_train(train, ParallelSpec()) if p.severity == "error"]
    assert [(p.key, p.message, p.help) for p in problems] == [
        ("schedule", "schedule warmup_cosine: warmup 50 >= the run's 46 steps, so the lr never "
         "reaches its peak", "use a warmup below 46")]


def test_check_prints_the_placement_warnings_beside_ok(tmp_path, capsys):
    """A setting that runs but does nothing at this world size (ZeRO over one data-parallel rank)
    is a warning of `nnspec check` (W0710, at the setting, exit 0), as `nnspec train` logs it."""
    from pathlib import Path

    from nnspec.cli import main

    spec = (Path(__file__).resolve().parents[2] / "specs" / "digits_mlp.nn").read_text()
    path = tmp_path / "zero.nn"
    path.write_text(spec + "\nparallel {\n  zero = 2\n}\n", encoding="utf-8")
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ")
    assert "warning[W0710]: zero 2 partitions nothing: the data-parallel degree is 1" in err
    assert "zero.nn:" in err and "zero = 2" in err  # located at the setting, with its line
    path.write_text(spec, encoding="utf-8")
    assert main(["check", str(path)]) == 0 and "warning" not in capsys.readouterr().err
