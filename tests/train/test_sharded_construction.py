"""Sharded construction: `build(device="meta")` allocates nothing; under the real deepspeed runner
(2 CPU ranks, one launch) ZeRO-3 constructs inside zero.Init (fp32 and bf16) and a 2-stage
pipeline materializes only its stage, each rank holding part of the model, and the weights
gathered at step 0 equal a one-process `build()` with the same seed (cast to bf16 for the bf16
run), so initialization does not depend on the layout."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn.modules.module import register_module_module_registration_hook

import nnspec
from nnspec.emit.module import load_module
from nnspec.train.batches import seed_everything
from nnspec.train.construct import stage_model

from .conftest import ROOT, subprocess_env
from .test_distributed import assert_clean_exit, free_port

SPEC = ROOT / "specs" / "tiny_gpt_pipe.nn"


def test_meta_build_allocates_nothing_and_has_builds_keys():
    spec = nnspec.load(SPEC)
    meta = spec.build(device="meta")
    real = spec.build()
    assert all(p.is_meta for p in meta.parameters()) and all(b.is_meta for b in meta.buffers())
    assert {k: (v.shape, v.dtype) for k, v in meta.state_dict().items()} == \
        {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
    # a meta model materializes on a real device (to_empty), ready for a load
    meta.to_empty(device="cpu").load_state_dict(real.state_dict(), strict=True)


def test_meta_build_refuses_weights(tmp_path):
    with pytest.raises(ValueError, match="meta model holds no values"):
        nnspec.load(SPEC).build(weights=tmp_path / "w.safetensors", device="meta")


def test_stage_model_materializes_one_stage_with_builds_values():
    spec = nnspec.load(SPEC)
    part, generated = spec.partition, load_module(spec.pipeline_source())
    seed_everything(0)
    whole = generated.Model().state_dict()
    after = torch.get_rng_state()  # where a whole build leaves the generator
    for stage in range(part.stages):
        classes = generated.LAYERS[part.bounds[stage]:part.bounds[stage + 1]]
        seed_everything(0)
        made = []  # for each module with parameters of its own: whether they were real when made
        handle = register_module_module_registration_hook(lambda _p, _n, child: made.append(
            any(not t.is_meta for t in own)) if child is not None and (
                own := list(child.parameters(recurse=False))) else None)
        try:
            model = stage_model(generated.Model, lambda m: [
                layer.m for layer in (cls(m) for cls in classes) if hasattr(layer, "m")])
        finally:
            handle.remove()
        if stage < part.stages - 1:
            # the meta skeleton, then the modules made up to the stage's last one (real), then
            # the later stages' modules made on the meta device: nothing drawn for them, no
            # memory held for them while the stage's modules are alive
            assert re.fullmatch("F*T+F+", "".join("T" if r else "F" for r in made)), made
            assert not torch.equal(torch.get_rng_state(), after)
        real = {k: v for k, v in model.state_dict().items() if not v.is_meta}
        assert 0 < len(real) < len(whole)
        for key, value in real.items():
            assert torch.equal(value, whole[key]), key
        held = sum(p.numel() for p in model.parameters() if not p.is_meta)
        # the stage's own parameters, plus the tied embedding the other stage owns
        assert held <= part.stage_params(stage) + model.transformer.wte.weight.numel()


def test_zero3_and_pipeline_step0_weights_equal_one_process_build(tmp_path):
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_accelerators", "2",
           "--master_port", str(free_port()), "--module", "tests.train.construct_worker",
           str(SPEC), str(tmp_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
    assert_clean_exit(r)
    spec = nnspec.load(SPEC)
    seed_everything(spec.settings.train.seed)
    expected = spec.build().state_dict()
    total = sum(v.numel() for v in spec.build(device="meta").parameters())
    for layout in ("zero3", "zero3_bf16", "pipeline"):
        got = load_file(tmp_path / f"{layout}.safetensors")
        assert sorted(got) == sorted(expected), layout
        for key, value in expected.items():
            if layout.endswith("bf16"):  # drawn in fp32 as build() does, then cast
                value = value.to(torch.bfloat16).float()
            assert torch.equal(got[key], value), (layout, key)
        reports = [json.loads(line.split(" ", 1)[1]) for line in r.stdout.splitlines()
                   if line.startswith(layout + " {")]
        assert sorted(rep["rank"] for rep in reports) == [0, 1], r.stdout[-3000:]
        for rep in reports:  # each rank holds a part, not the whole model
            assert rep["held"] < 0.75 * total, (layout, rep, total)
