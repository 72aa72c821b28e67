"""Step-0 weights of sharded construction, under the deepspeed runner (2 ranks, one launch):

    deepspeed --num_accelerators 2 --module tests.train.construct_worker SPEC OUT

For each layout (ZeRO-3 over 2 ranks in fp32 and in bf16, then a 2-stage pipeline) every rank seeds and builds its
backend as `nnspec.train.run` does (loop.backend_for), reports how many parameter elements it
holds and which spec names it materialized, and rank 0 saves the gathered weights to
OUT/LAYOUT.safetensors before any step. The pipeline runs last: after a PipelineEngine,
DeepSpeed's global state breaks later engines of other kinds in the same process.
"""
from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import nnspec
from nnspec.ir import largest_layer
from nnspec.train import distributed
from nnspec.train.batches import seed_everything
from nnspec.train.loop import _emit, backend_for, check_settings

LAYOUTS = {"zero3": {"zero": 3, "pipeline_stages": 1, "stage_boundaries": ()},
           "zero3_bf16": {"zero": 3, "pipeline_stages": 1, "stage_boundaries": (),
                          "precision": "bf16"},
           "pipeline": {"zero": 0, "pipeline_stages": 2}}


def held(backend) -> int:
    """Parameter elements this rank stores (a ZeRO-3 parameter's local partition)."""
    return sum(getattr(p, "ds_tensor", p).numel() for p in backend.engine.module.parameters())


def main(argv: list[str]) -> int:
    spec_path, out = [a for a in argv if not a.startswith("--local_rank")]
    spec = nnspec.load(spec_path)
    train = spec.settings.train
    distributed.init_process_group()
    rank, world = distributed.rank(), distributed.world_size()
    try:
        for name, update in LAYOUTS.items():
            parallel = spec.settings.parallel.model_copy(update=update)
            objective = check_settings(train, parallel, world)
            config = _emit(train, parallel, world, 100, largest_layer(spec.ir))  # as train does
            seed_everything(train.seed)
            backend = backend_for(spec, train, parallel, config, objective, multi=True)
            report = {"rank": rank, "held": held(backend)}
            sd = backend.state_dict()
            if rank == 0:
                save_file({k: v.contiguous() for k, v in sd.items()},
                          str(Path(out) / f"{name}.safetensors"))
            # one write per line: every rank prints into the runner's one stdout, and print()
            # writes the text and the newline apart, so two ranks' lines could run together
            sys.stdout.write(f"{name} {json.dumps(report)}\n")
            sys.stdout.flush()
            backend.engine = backend.optimizer = backend.scheduler = backend.plateau = None
            del backend, sd
            gc.collect()
            distributed.barrier()
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
