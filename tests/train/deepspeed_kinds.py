"""A checkpoint of every kind DeepSpeed writes for nnspec, saved by one process (world size 1).

    RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
        python -m tests.train.deepspeed_kinds OUT

digits_mlp is trained for two steps under each of KINDS' parallel settings (ZeRO 0-3, bf16,
optimizer offload, a warmup schedule) into OUT/NAME/, as `nnspec train` under the runner would
(checkpoints/step-00000002/ with its marker); OUT/pipeline/ holds a one-stage DeepSpeed pipeline
with a tied layer, saved by the PipelineEngine (layer files). tests/train/test_safe_load.py checks
that every file loads with the weights-only unpickler and crafts copies of them. One process is
enough: the files' contents do not depend on the number of ranks, only their count does.
"""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch

import nnspec
from nnspec.train import distributed, run
from nnspec.train.__main__ import sections

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"steps": 2, "batch_size": 32, "checkpoint_every": 2, "eval_every": 2,
         "optimizer": {"name": "adamw", "kwargs": {"lr": 0.01}},
         "schedule": {"name": "warmup_cosine", "kwargs": {"warmup": 1}}}
KINDS = {
    "zero0": {"zero": 0},
    "zero0-bf16": {"zero": 0, "precision": "bf16"},
    "zero1-bf16": {"zero": 1, "precision": "bf16"},
    "zero2-offload": {"zero": 2, "offload_optimizer": "cpu"},
    "zero3": {"zero": 3},
    "zero3-bf16-offload": {"zero": 3, "precision": "bf16", "offload_optimizer": "cpu"},
}


def pipeline(out: Path) -> None:
    """A one-stage PipelineModule whose last layer is tied to its first (a TiedLayerSpec),
    trained one batch with ZeRO 1 and saved under tag `t`."""
    import deepspeed
    from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec

    def head(layer, x):
        return torch.nn.functional.linear(x, layer.weight)

    layers = [TiedLayerSpec("w", torch.nn.Linear, 8, 8, bias=False), LayerSpec(torch.nn.ReLU),
              TiedLayerSpec("w", torch.nn.Linear, 8, 8, bias=False, forward_fn=head)]
    module = PipelineModule(layers=layers, num_stages=1,
                            loss_fn=torch.nn.functional.cross_entropy)
    config = {"train_batch_size": 4, "train_micro_batch_size_per_gpu": 2,
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
              "zero_optimization": {"stage": 1}, "steps_per_print": 1 << 30}
    engine, *_ = deepspeed.initialize(model=module, model_parameters=list(module.parameters()),
                                      config=config)
    batch = (torch.randn(2, 8), torch.tensor([0, 1]))
    engine.train_batch(iter([batch, batch]))
    engine.save_checkpoint(str(out), tag="t", save_latest=False)
    del engine
    gc.collect()


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    spec = nnspec.load(ROOT / "specs/digits_mlp.nn")
    leave = distributed.shutdown
    distributed.shutdown = gc.collect  # one process group for every run (see several_runs.py)
    try:
        for name, parallel in KINDS.items():
            run(spec, *sections(json.dumps(TRAIN), json.dumps(parallel)), out / name,
                progress=False)
        pipeline(out / "pipeline")
    finally:
        distributed.shutdown = leave
        leave()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
