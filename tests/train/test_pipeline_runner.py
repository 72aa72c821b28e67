"""A 2-stage pipeline under the real `deepspeed` runner (CPU accelerator, 2 processes).

specs/tiny_gpt_pipe.nn splits a tiny GPT over two stages, its language-model head tied to the
token embedding on the other stage (a DeepSpeed tied layer). The run must exit cleanly on both
ranks, its loss must fall, and since a pipeline only changes where the work happens, it must land
where the same spec trained in one process lands (same batches, same initialization). Its
gathered weights load strictly into the spec's model, and a run resumed from its checkpoint ends
bit-identical.

specs/bert_base.nn (small sizes, the same structure) runs as two stages whose boundary carries the
attention mask beside the hidden states, and lands where one process does.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import nnspec

from .conftest import ROOT, subprocess_env
from .test_distributed import assert_clean_exit, free_port

pytest.importorskip("deepspeed")
BIN = Path(sys.executable).parent
SPEC = "specs/tiny_gpt_pipe.nn"
SETS = ["--set", "train.steps=60", "--set", "train.eval_every=30",
        "--set", "train.checkpoint_every=30"]


def train(out: Path, *runner: str) -> subprocess.CompletedProcess:
    """`nnspec train` of SPEC into `out`, under the runner with `runner`'s arguments when given
    (--resume and --set NAME=VALUE among them go to nnspec)."""
    extra = [a for i, a in enumerate(runner) if a in ("--resume", "--set")
             or i and runner[i - 1] == "--set"]
    runner = tuple(a for a in runner if a not in extra)
    nnspec_cmd = [str(BIN / "nnspec"), "train", SPEC, "--out", str(out), "--no-progress", *SETS,
                  *extra]
    cmd = ([str(BIN / "deepspeed"), *runner, "--master_port", str(free_port()), "--no_python",
            "--no_local_rank", *nnspec_cmd] if runner else nnspec_cmd)
    return subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)


def rows(out: Path, phase: str) -> list[dict]:
    return [r for r in csv.DictReader(open(out / "metrics.csv")) if r["phase"] == phase]


def test_two_stage_pipeline_with_tied_layer_trains_like_one_process(tmp_path):
    spec = nnspec.load(ROOT / SPEC)
    assert spec.partition.stages == 2 and spec.partition.cross_stage_ties()

    piped = train(tmp_path / "pipe", "--num_accelerators", "2")
    assert_clean_exit(piped)
    final = json.loads((tmp_path / "pipe" / "final.json").read_text())
    first = float(rows(tmp_path / "pipe", "train")[0]["loss"])
    assert final["step"] == 60 and final["loss"] < 0.5 * first, (first, final)
    # DeepSpeed checkpoints of both stages: layer files and the completion marker
    ckpt = tmp_path / "pipe" / "checkpoints" / "step-00000060"
    assert (ckpt / "nnspec.json").is_file() and list(ckpt.glob("layer_*-model_states.pt"))

    alone = train(tmp_path / "one")
    assert alone.returncode == 0, alone.stderr[-3000:]
    ref = json.loads((tmp_path / "one" / "final.json").read_text())
    for key in ("loss", "accuracy", "perplexity"):
        assert final[key] == pytest.approx(ref[key], rel=2e-3, abs=2e-3), key

    weights = load_file(tmp_path / "pipe" / "model.safetensors")
    model = spec.build()
    model.load_state_dict(weights, strict=True)
    # the head and the embedding stayed one weight: the tied layer summed their gradients
    assert (weights["lm_head.weight"] - weights["transformer.wte.weight"]).abs().max() < 1e-6

    # export-weights names the stages' layer files with the spec's partition
    from nnspec.cli import main
    exported = tmp_path / "exported.safetensors"
    assert main(["export-weights", str(tmp_path / "pipe"), "-o", str(exported)]) == 2
    assert not exported.exists()
    assert main(["export-weights", str(tmp_path / "pipe"), "-o", str(exported),
                 "--spec", str(ROOT / SPEC)]) == 0
    e = load_file(exported)
    assert sorted(e) == sorted(weights) and all(torch.equal(e[k], weights[k]) for k in e)

    # resumed from the step-30 checkpoint in fresh processes, it ends exactly where it did
    # (the tied layers' weights and optimizer state are in the checkpoint too)
    again = tmp_path / "resumed"
    shutil.copytree(tmp_path / "pipe" / "checkpoints" / "step-00000030",
                    again / "checkpoints" / "step-00000030")
    shutil.copy(tmp_path / "pipe" / "metrics.csv", again / "metrics.csv")
    shutil.copy(tmp_path / "pipe" / "run.json", again / "run.json")  # what --resume checks
    resumed = train(again, "--num_accelerators", "2", "--resume")
    assert_clean_exit(resumed)
    assert (again / "metrics.csv").read_text() == (tmp_path / "pipe" / "metrics.csv").read_text()
    assert json.loads((again / "final.json").read_text()) == final
    b = load_file(again / "model.safetensors")
    assert all(torch.equal(weights[k], b[k]) for k in weights)


# bert_base's structure at a size that trains in seconds: 4 encoder layers, no dropout (the two
# runs draw no random numbers then, so they compute the same thing)
SMALL_BERT = {"layers": 4, "hidden": 16, "heads": 2, "intermediate_size": 32, "vocab_size": 40,
              "seq": 8, "max_positions": 8, "dropout_p": 0.0}


def bert_data(path: Path) -> None:
    """Padded token sequences: each position's class is its token's id mod 16."""
    rng = np.random.default_rng(0)
    n, seq = 256, SMALL_BERT["seq"]
    mask = (np.arange(seq)[None, :] < rng.integers(3, seq + 1, size=(n, 1))).astype(np.int64)
    ids = rng.integers(1, SMALL_BERT["vocab_size"], size=(n, seq)) * mask
    np.savez(path, input_ids=ids, attention_mask=mask, y=ids % SMALL_BERT["hidden"])


def test_bert_base_trains_as_two_stages_with_its_mask_crossing_like_one_process(tmp_path):
    # the full model: balanced by parameters, each stage within 10% of half
    full = nnspec.load(ROOT / "specs/bert_base.nn", sets={"parallel.pipeline_stages": 2})
    total = full.summary()["params"]
    assert all(abs(full.partition.stage_params(s) - total / 2) <= 0.05 * total for s in range(2))

    bert_data(tmp_path / "bert.npz")
    sets = {**{k: str(v) for k, v in SMALL_BERT.items()},
            "train.data": f'npz("{tmp_path / "bert.npz"}")', "train.steps": "30",
            "train.batch_size": "16", "train.loss": "cross_entropy",
            "train.optimizer": "adamw(lr=3e-3)", "train.eval_every": "15",
            "parallel.grad_accum": "2", "parallel.pipeline_stages": "2",
            # recomputed layers take the (mask, hidden states) tuple through checkpointing too
            "parallel.activation_checkpointing": '["BertLayer"]'}
    small = nnspec.load(ROOT / "specs/bert_base.nn", **SMALL_BERT,
                        sets={"parallel.pipeline_stages": 2})
    part = small.partition
    assert part.stage_units(1)[0].label == "encoder.layer.2"
    assert [(v.hint, v.type.dtype) for v in part.crossing(0)] == \
        [("attention_mask", "long"), ("encoder_layer", "float")]

    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    cmd = [str(BIN / "nnspec"), "train", "specs/bert_base.nn", "--no-progress", *args]
    piped = subprocess.run([str(BIN / "deepspeed"), "--num_accelerators", "2", "--master_port",
                            str(free_port()), "--no_python", "--no_local_rank", *cmd, "--out",
                            str(tmp_path / "pipe")], cwd=ROOT, env=subprocess_env(),
                           capture_output=True, text=True, timeout=600)
    assert_clean_exit(piped)
    alone = subprocess.run([*cmd, "--out", str(tmp_path / "one")], cwd=ROOT,
                           env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    for phase in ("train", "eval"):
        got, want = rows(tmp_path / "pipe", phase), rows(tmp_path / "one", phase)
        assert [r["step"] for r in got] == [r["step"] for r in want] and got, phase
        for a, b in zip(got, want):
            for key in ("loss", "accuracy"):
                if b.get(key):
                    assert float(a[key]) == pytest.approx(float(b[key]), rel=2e-3, abs=2e-3)
    first = float(rows(tmp_path / "pipe", "train")[0]["loss"])
    final = json.loads((tmp_path / "pipe" / "final.json").read_text())
    assert final["step"] == 30 and final["loss"] < 0.9 * first, (first, final)
    # both stages' weights, gathered, load strictly into the model
    small.build().load_state_dict(load_file(tmp_path / "pipe" / "model.safetensors"), strict=True)


def test_bf16_pipeline_frees_16bit_gradients_and_trains_like_one_process(tmp_path):
    """bf16 stages train with DeepSpeed's BF16_Optimizer, which nnspec configures to fold each
    16-bit gradient into its accumulation buffer as autograd makes it (immediate_grad_update);
    the tied layer's gradients, reduced across the stages from that buffer, still meet. Loss
    lands near the one-process bf16 run (autocast over fp32 weights: close, not equal)."""
    bf16 = ["--set", "parallel.precision=bf16"]
    assert nnspec.load(ROOT / SPEC, sets={"parallel.precision": "bf16"}).deepspeed_config()[
        "bf16"]["immediate_grad_update"]
    piped = train(tmp_path / "pipe", "--num_accelerators", "2", *bf16)
    assert_clean_exit(piped)
    final = json.loads((tmp_path / "pipe" / "final.json").read_text())
    first = float(rows(tmp_path / "pipe", "train")[0]["loss"])
    assert final["step"] == 60 and final["loss"] < 0.5 * first, (first, final)
    alone = train(tmp_path / "one", *bf16)
    assert alone.returncode == 0, alone.stderr[-3000:]
    ref = json.loads((tmp_path / "one" / "final.json").read_text())
    assert final["loss"] == pytest.approx(ref["loss"], rel=0.1), (final, ref)
    weights = load_file(tmp_path / "pipe" / "model.safetensors")
    assert (weights["lm_head.weight"] - weights["transformer.wte.weight"]).abs().max() < 1e-6
