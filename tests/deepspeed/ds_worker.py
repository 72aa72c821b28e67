"""Train a tiny model for a few steps under DeepSpeed with an emitted config: the run-time half
of the config tests. Run as `python -m tests.deepspeed.ds_worker CASE...` (one process, world
size 1, each case re-emitted for world size 1), or under DeepSpeed's runner through a stand-in
`nnspec` (see test_runtime.py), which calls main(["train", CASE]) in every process.

Prints one line per case: `CASE ok LOSS...` or `CASE FAILED: error`.
"""
from __future__ import annotations

import gc
import os
import socket
import sys
import traceback

import torch
import torch.nn as nn

from nnspec.emit.deepspeed import client_optimizer, emit_deepspeed_config

from .cases import CASES

STEPS = 3


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def run_case(name: str, world_size: int) -> list[float]:
    import deepspeed

    c = CASES[name]
    total = c.total_steps or (None if c.train.steps else 100)
    cfg = emit_deepspeed_config(c.train, c.parallel, world_size, total_steps=total)
    torch.manual_seed(0)
    layers = [nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)]
    loss_fn = nn.CrossEntropyLoss()
    if "activation_checkpointing" in cfg:
        deepspeed.checkpointing.configure(None, deepspeed_config=cfg)
        # the client's part: checkpoint the blocks the patterns match (here: the middle layer)
        inner = layers[2]

        class Checkpointed(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return deepspeed.checkpointing.checkpoint(self.inner, x)
        layers[2] = Checkpointed()
    if c.parallel.pipeline_stages > 1:
        from deepspeed.pipe import PipelineModule
        model = PipelineModule(layers=layers, num_stages=c.parallel.pipeline_stages,
                               loss_fn=loss_fn, partition_method=c.parallel.partition,
                               checkpointable_layers=["Linear"])
    else:
        model = nn.Sequential(*layers)
    client = client_optimizer(c.train)
    optimizer = getattr(torch.optim, client[0])(model.parameters(), **client[1]) if client else None
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, model_parameters=None if client else model.parameters(),
        optimizer=optimizer, config=cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(c.parallel.precision,
                                                                 torch.float32)
    micro, accum = cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"]
    losses = []
    rank = int(os.environ.get("RANK", "0"))
    if c.parallel.pipeline_stages > 1:
        x, y = _data(micro * accum * STEPS, seed=rank)

        def batches():
            for i in range(0, len(x), micro):
                yield x[i:i + micro].to(dtype), y[i:i + micro]
        it = batches()
        for _ in range(STEPS):
            losses.append(float(engine.train_batch(data_iter=it)))
    else:
        x, y = _data(micro * accum * STEPS, seed=rank)
        for i in range(0, len(x), micro):
            out = engine(x[i:i + micro].to(dtype))
            loss = loss_fn(out.float(), y[i:i + micro])
            engine.backward(loss)
            engine.step()
            losses.append(float(loss))
    del engine, optimizer
    gc.collect()
    return losses


def say(line: str) -> None:
    """One line in one write, so the lines of several ranks sharing a pipe do not interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    import deepspeed
    import torch.distributed as dist

    under_runner = argv[:1] == ["train"]
    names = argv[1:] if under_runner else argv
    if not under_runner:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    deepspeed.init_distributed(dist_backend="gloo")
    world_size = dist.get_world_size()
    failed = 0
    for name in names:
        try:
            losses = run_case(name, world_size)
            ok = all(torch.isfinite(torch.tensor(losses)))
            say(f"{name} {'ok' if ok else 'FAILED: loss not finite'} "
                + " ".join(f"{v:.4f}" for v in losses))
            failed += not ok
        except Exception as e:  # report and go on with the next case
            traceback.print_exc()
            say(f"{name} FAILED: {type(e).__name__}: {e}".splitlines()[0])
            failed += 1
    dist.destroy_process_group()
    return 1 if failed else 0


def exit_now(code: int) -> None:
    """Exit without Python's slow teardown of DeepSpeed's and torch's threads (seconds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main(sys.argv[1:]))
