"""A `weights` section on a generated spec, and the round trip through it: the model's tensors
written as export writes them (renamed by `export_rename`, 2-d weights that `transpose` names
transposed), with a key that `drop` ignores added, load back through `rename`, `drop` and
`transpose` into a fresh build as the same tensors, under every state_dict name."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from nnspec.weights import from_model

from .pieces import Env, weight

PREFIX = "ckpt."


def weights_section(env: Env) -> str | None:
    """The section for a spec whose named layers `env` holds, or None (no 2-d weight to name).
    It draws nothing (specgen keeps the spec stream as it is): every third 2-d weight is
    transposed, by its exact key or by a pattern that may take other weights along."""
    two_d = sorted(n for n, info in env.layers.items() if info[0] == "leaf"
                   and len(weight(info[1], info[2], env.bind) or ()) == 2)
    if not two_d:
        return None
    patterns = [f"{n}.weight" if i % 2 == 0 else f"{n[0]}*.weight"
                for i, n in enumerate(two_d[::3])]
    transpose = ", ".join(f'"{p}"' for p in dict.fromkeys(patterns))
    return ("weights {\n"
            '  rename = [["^ckpt\\\\.", ""]]\n'
            '  drop = ["ckpt_extra.*"]\n'
            f"  transpose = [{transpose}]\n"
            '  export_rename = [["^", "ckpt."]]\n'
            "}\n")


def check_roundtrip(spec) -> None:
    """Export the built model's tensors, add a dropped key, and load them into a fresh build."""
    model = spec.build()
    torch.manual_seed(5)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t))
    state = model.state_dict()
    out = from_model(state, spec.settings.weights)
    assert set(out) == {PREFIX + k for k in state}, "export_rename gives every key its prefix"
    transposed = [k for k in state if state[k].dim() == 2
                  and out[PREFIX + k].shape != state[k].shape]
    assert all(out[PREFIX + k].shape == state[k].t().shape for k in transposed)
    out["ckpt_extra.junk"] = torch.zeros(2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        save_file(out, str(path))
        loaded = spec.build(weights=path).state_dict()
    assert set(loaded) == set(state)
    for k, t in state.items():
        assert torch.equal(loaded[k], t), f"weights round trip changed `{k}`"
