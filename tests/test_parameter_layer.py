"""The `parameter` layer: a learned tensor in flows, blocks and repeats (issue 9, defect 3).

Every form used to fail with E0324. The golden fixture tests/golden/valid/learned_tensors.nn has
a class token, a position table and a layer scale in a block called twice and repeated; here it is
built and its output compared with the same computation done by hand from the state_dict.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nnspec
from nnspec.emit.module import load_module
from nnspec.lang.diagnostics import SpecError

LEARNED = Path(__file__).resolve().parent / "golden" / "valid" / "learned_tensors.nn"


def _randomize(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return {k: v.double() for k, v in state.items()}


def test_the_issue_spec_checks_and_keys_the_parameter_by_its_name():
    spec = nnspec.loads("""
model m() {
  input x: float[4, 8]
  t = x -> cls: parameter([1, 8])
  out cat(t, x, dim=1)
}
""")
    model = spec.build()
    assert list(model.state_dict()) == ["cls"]
    x = torch.randn(3, 4, 8)
    out = model(x)
    assert out.shape == (3, 5, 8)
    assert torch.equal(out[:, 0], model.cls[0].expand(3, -1)) and torch.equal(out[:, 1:], x)


def test_learned_tensors_compute_what_the_spec_says():
    spec = nnspec.load(LEARNED)
    model = spec.build().double().eval()
    w = _randomize(model)
    assert set(w) == {"cls_token", "pos_embed", "head.weight", "head.bias"} | {
        f"{p}.{n}" for p in ("first", "second", "blocks.0", "blocks.1")
        for n in ("ln.weight", "ln.bias", "fc.weight", "fc.bias", "scale")}
    assert sum(v.numel() for v in w.values()) == spec.summary()["params"]
    x = torch.randn(2, 4, 8, dtype=torch.float64)

    def scaled_mlp(h, p):
        y = F.layer_norm(h, (8,), w[f"{p}.ln.weight"], w[f"{p}.ln.bias"])
        y = y @ w[f"{p}.fc.weight"].T + w[f"{p}.fc.bias"]
        return h + y * w[f"{p}.scale"]

    h = torch.cat([w["cls_token"].expand(2, 1, 8), x], dim=1) + w["pos_embed"]
    for p in ("first", "second", "blocks.0", "blocks.1"):
        h = scaled_mlp(h, p)
    want = h[:, 0] @ w["head.weight"].T + w["head.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)


def test_a_block_called_twice_has_two_independent_parameters():
    model = nnspec.load(LEARNED).build()
    scales = [model.first.scale, model.second.scale, model.blocks[0].scale, model.blocks[1].scale]
    assert len({id(s) for s in scales}) == 4
    loss = (model(torch.randn(2, 4, 8)) ** 2).sum()
    loss.backward()
    assert all(s.grad is not None for s in scales)


def test_a_reused_parameter_is_shared_and_pipeline_layers_hold_it():
    spec = nnspec.loads("""
model m() {
  input ids: long[6]
  e = ids -> wte: embedding(10, 8)
  h = e + (ids -> wpe: parameter([6, 8], init="uniform", std=0.1))
  out h + (ids -> wpe) -> linear(3)
}
""")
    generated = load_module(spec.pipeline_source())
    model = generated.Model().eval()
    assert sorted(model.state_dict()) == ["linear.bias", "linear.weight", "wpe", "wte.weight"]
    assert spec.summary()["params"] == 80 + 48 + 27
    layers = [cls(model) for cls in generated.LAYERS]
    ids = torch.randint(0, 10, (2, 6))
    live = ids
    with torch.no_grad():
        for layer in layers:
            live = layer(live)
        assert torch.equal(live, model(ids))
    held = {id(p) for layer in layers for p in layer.parameters()}
    assert held == {id(p) for p in model.parameters()}


def test_batch_dim_parameters_load_torchvision_vit_tensors_by_their_names():
    """ViT keeps its class token as [1, 1, D] and its position table as [1, S, D]: with
    batch_dim=true the spec stores them so, under the same names, and expands them over the batch
    as torchvision's forward does."""
    from torchvision.models.vision_transformer import VisionTransformer

    spec = nnspec.loads("""
block Encoder(seq, dim) {
  in x
  out x + (x -> pos_embedding: parameter([1, seq, dim], batch_dim=true))
}
model vit_head(patches = 4, dim = 8) {
  input x: float[patches, dim]
  cls = x -> class_token: parameter([1, 1, dim], batch_dim=true)
  out cat(cls, x, dim=1) -> encoder: Encoder(patches + 1, dim)
}
""")
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
                            mlp_dim=16).eval()
    with torch.no_grad():
        vit.class_token.normal_()
    ref = {k: v for k, v in vit.state_dict().items() if k in ("class_token", "encoder.pos_embedding")}
    model = spec.build().eval()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {"class_token": (1, 1, 8), "encoder.pos_embedding": (1, 5, 8)}
    model.load_state_dict(ref, strict=True)
    patches = vit._process_input(torch.randn(3, 3, 8, 8))
    want = torch.cat([vit.class_token.expand(3, -1, -1), patches], dim=1) + vit.encoder.pos_embedding
    torch.testing.assert_close(model(patches), want)


def test_batch_dim_needs_a_leading_one():
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads("model m() {\n  input x: float[4]\n  out x -> p: parameter([2, 4], batch_dim=true)\n}\n")
    d = err.value.diagnostics[0]
    assert (d.code, d.span.line) == ("E0401", 3) and "[1, 1, 768]" in d.help


def test_a_number_as_init_fills_the_parameter_as_convnext_s_layer_scale_starts():
    """torchvision starts CNBlock.layer_scale at ones(C, 1, 1) * 1e-6: `init=1e-6` says that."""
    spec = nnspec.loads("""
block Scaled(c, start = 1e-6) {
  in x
  s = x -> layer_scale: parameter([c, 1, 1], init=start)
  out s * x
}
model m() {
  input x: float[4, 3, 3]
  a: Scaled(4)
  b: Scaled(4, start=2)
}
""")
    model = spec.build()
    assert torch.equal(model.a.layer_scale, torch.full((4, 1, 1), 1e-6))
    assert torch.equal(model.b.layer_scale, torch.full((4, 1, 1), 2.0))
    # one class for both uses: the fill is an argument (2 is written 2.0: torch.full of an int
    # would make an integer tensor)
    assert "torch.full((c, 1, 1), " in spec.source
    assert "Scaled(4, 1e-06, 1e-06)" in spec.source and "Scaled(4, 2, 2.0)" in spec.source


def test_an_init_that_is_neither_a_scheme_nor_a_number_is_located():
    with pytest.raises(SpecError) as err:
        nnspec.loads('model m() {\n  input x: float[4]\n  s = x -> p: parameter([4], init="one")\n'
                     '  out s * x\n}\n')
    text = str(err.value)
    assert "E0329" in text and "<string>:3:30" in text and "or a number" in text
