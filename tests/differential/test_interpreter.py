"""The reference interpreter: it covers every layer kind, agrees with the built module on specs
that use each kind with the arguments that matter, reads tied weights from their source, holds
each value to its checked type, and the harness reports a disagreement at the layer and spec line
where it starts."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec import interp
from nnspec.compile import Spec
from nnspec.ir import Leaf, ModuleDef, Op, Seq, Value
from nnspec.layers import REGISTRY, T

from .cases import CASES
from .harness import check_spec, default_dtype, fill_state
from .inputs import draw_inputs

# kinds that no spec can use: check refuses `parameter` anywhere in a flow (E0324, reported as a
# checker bug); test_parameter_kind runs it from a hand-built IR
NOT_IN_SPECS = {"parameter"}


def test_table_covers_every_layer_kind():
    assert set(interp.KINDS) == set(REGISTRY)


def _kinds(child, seen: set) -> set:
    if isinstance(child, Leaf):
        return {child.kind}
    if isinstance(child, Seq):
        return set().union(*(_kinds(c, seen) for c in child.items))
    if id(child) in seen:
        return set()
    seen.add(id(child))
    out = {op.layer.kind for op in child.ops if op.layer is not None}
    return out.union(*(_kinds(c, seen) for _, c in child.children))


def test_cases_use_every_kind():
    used = set()
    for name, text in CASES.items():
        used |= _kinds(nnspec.loads(text, name=f"{name}.nn").ir, set())
    assert set(REGISTRY) - NOT_IN_SPECS - used == set()


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_matches_built_module(name):
    result = check_spec(nnspec.loads(CASES[name], name=f"{name}.nn"))
    assert all(e <= 1e-10 for e in result["outputs"])


def _hand_built(root: ModuleDef) -> Spec:
    """A Spec around an IR made in Python (settings from a trivial spec)."""
    base = nnspec.loads("model base {\n  input x: float[2]\n  fc: linear(2)\n}", name="base.nn")
    return Spec(base.program, root, "hand.nn", base.settings)


def test_parameter_kind():
    span = nnspec.loads("model s {\n  input x: float[3, 4]\n  identity\n}", name="hand.nn").ir.span
    x = Value(T((3, 4)), "x")
    cls = Leaf(REGISTRY["parameter"].model_validate({"shape": (1, 4)}), [x.type], span)
    token, y = Value(T((1, 4)), "cls"), Value(T((4, 4)), "y")
    root = ModuleDef("hand", "hand()", span, children=[("cls_token", cls)], inputs=[x],
                     input_names=["x"], outputs=[y],
                     ops=[Op(cls, cls.layer, [x], {}, [token], span),
                          Op(None, REGISTRY["cat"].model_validate({"dim": 1}), [token, x], {}, [y],
                             span)])
    result = check_spec(_hand_built(root))
    assert result["params"] == 4 and result["outputs"] == [0.0]


# ---- bugs the differential check found (each fixed in the commit that added its case) ----------
REGRESSIONS = {
    # a padding mask given by keyword to a layer in a list went in positionally (as the key)
    "mha_mask_by_keyword_in_a_list": """
model p {
  input x: float[5, 8]
  input pad: bool[5]
  out x -> layers: [multihead_attention(num_heads=2, key_padding_mask=pad)] * 2
}""",
    "mha_mask_by_position_in_a_list": """
model p {
  input x: float[5, 8]
  input pad: long[5]
  out x -> layers: [multihead_attention(pad, num_heads=2), multihead_attention(pad, num_heads=4)]
}""",
    # ... and the decoder's memory mask in a list became the target's mask
    "decoder_memory_mask_in_a_list": """
model p {
  input x: float[5, 8]
  input mem: float[3, 8]
  input mpad: bool[3]
  out x -> layers: [transformer_decoder_layer(mem, nhead=2, dim_feedforward=8,
                                              memory_key_padding_mask=mpad)] * 2
}""",
    # ... even where T == S, when the memory mask has the target mask's type: it bound by type
    "decoder_memory_mask_by_keyword_in_a_list_same_length": """
model p {
  input x: float[4, 8]
  input mem: float[4, 8]
  input mpad: bool[4]
  out x -> layers: [transformer_decoder_layer(mem, nhead=2, dim_feedforward=8,
                                              memory_key_padding_mask=mpad)]
}""",
    # key= and value= given in the other order in a list bound as (key, value) by position
    "mha_value_and_key_by_keyword_in_a_list": """
model p {
  input x: float[5, 8]
  input k: float[3, 8]
  input v: float[3, 8]
  out x -> layers: [multihead_attention(value=v, key=k, num_heads=2)] * 2
}""",
    # `/` on long tensors is true division: float, not long as check said (x/0 is inf, 0/0 NaN
    # on both sides)
    "divide_long_tensors": """
model p {
  input a: long[5]
  input b: long[5]
  out a / b, div(a, other=2.0)
}""",
    # bool with long promotes to long (check said bool)
    "bool_times_long": """
model p {
  input a: bool[5]
  input b: long[5]
  out a * b, a + b, b * a
}""",
    # cat and stack promote mixed dtypes (check gave the first input's)
    "cat_and_stack_mixed_dtypes": """
model p {
  input ids: long[3]
  input x: float[3]
  input b: bool[3]
  out cat(ids, x, dim=1), cat(b, ids, dim=1), stack(ids, x, dim=1), stack(b, b, dim=1)
}""",
    # ones_like(ids, dtype="float") was float32 in a float64 model, and the linear refused it
    "float_from_long_ids": """
model p {
  input ids: long[4]
  out ones_like(ids, dtype="float") + zeros_like(ids, dtype="float") -> linear(3)
}""",
    # the sin/cos table was computed in float32, 1e-8 off in a float64 model
    "sinusoidal_table_in_float64": """
model p {
  input x: float[300, 6]
  out x -> sinusoidal_position_encoding(max_len=400)
}""",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name):
    result = check_spec(nnspec.loads(REGRESSIONS[name], name=f"{name}.nn"))
    assert all(e <= 1e-10 for e in result["outputs"])


# ---- keyword tensors of a layer in a list bind by name, as outside a list ---------------------
IN_A_LIST = {
    "decoder": ("x: float[4, 8]", "mem: float[4, 8]", "mpad: bool[4]",
                "transformer_decoder_layer(mem, nhead=2, dim_feedforward=8, "
                "memory_key_padding_mask=mpad)"),
    "mha": ("x: float[5, 8]", "k: float[3, 8]", "v: float[3, 8]",
            "multihead_attention(value=v, key=k, num_heads=2)"),
}


def _spec(inputs: list[str], layer: str, wrap: str, name: str):
    decls = "".join(f"  input {d}\n" for d in inputs)
    return nnspec.loads(f"model p {{\n{decls}  out x -> l: {wrap.format(layer)}\n}}", name=name)


def _outputs(spec, state: dict, inputs: list) -> torch.Tensor:
    with default_dtype(torch.float64):
        model = spec.build().to(torch.float64).eval()
        model.load_state_dict(state)
        with torch.no_grad():
            return model(*inputs)


@pytest.mark.parametrize("name", sorted(IN_A_LIST))
@pytest.mark.parametrize("wrap", ["[{}]", "[{}] * 1"])
def test_keyword_tensors_in_a_list_compute_what_they_do_outside_it(name, wrap):
    *inputs, layer = IN_A_LIST[name]
    alone = _spec(inputs, layer, "{}", "alone.nn")
    listed = _spec(inputs, layer, wrap, "listed.nn")
    with default_dtype(torch.float64):
        state = alone.build().to(torch.float64).state_dict()
        gen = torch.Generator().manual_seed(3)
        fill_state(state, gen)
        xs = draw_inputs(alone.ir, gen)
    if name == "decoder":  # pad the memory (not all of it): then where the mask goes matters
        xs[2] = torch.zeros_like(xs[2])
        xs[2][:, 2:] = True
    listed_state = {"l.0." + k.removeprefix("l."): t for k, t in state.items()}
    want = _outputs(alone, state, xs)
    assert torch.equal(_outputs(listed, listed_state, xs), want)
    got = interp.run(listed.ir, listed_state, [x.clone() for x in xs])
    assert torch.allclose(got[0], want, rtol=1e-10, atol=0)
    assert all(e <= 1e-10 for e in check_spec(listed)["outputs"])
    # bound by type instead (the mask as the target's, key and value swapped) the layer computes
    # something else, so the comparison above tells the two apart
    if name == "decoder":
        wrong = _outputs(_spec(inputs, layer.replace("memory_key", "tgt_key"), "{}", "w.nn"),
                         state, xs)
    else:
        wrong = _outputs(alone, state, [xs[0], xs[2], xs[1]])
    assert not torch.allclose(wrong, want)


def test_a_keyword_tensor_that_does_not_fit_a_list_item_is_a_located_error():
    # the memory mask has x's length, not memory's: outside a named list (a module list) this
    # was E0401, inside one it bound by type as the target mask, silently
    text = ("model p {\n  input x: float[4, 8]\n  input mem: float[3, 8]\n  input pad: bool[4]\n"
            "  out x -> l: [transformer_decoder_layer(mem, nhead=2, memory_key_padding_mask=pad)]"
            "\n}")
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="p.nn")
    assert "error[E0401]" in str(err.value) and "p.nn:5:16" in str(err.value)
    assert "memory_key_padding_mask must be [B, 3]" in str(err.value)


def test_a_keyword_tensor_given_to_a_list_is_a_located_error():
    # a block standing for a list has no named inputs: the mask was dropped, silently
    text = ("block Enc(n) = [transformer_encoder_layer(nhead=2, dim_feedforward=8)] * n\n"
            "model p {\n  input x: float[4, 8]\n  input pad: bool[4]\n"
            "  out x -> Enc(2, src_key_padding_mask=pad)\n}")
    for line in (text, text.replace("-> Enc", "-> e: Enc")):
        with pytest.raises(nnspec.SpecError) as err:
            nnspec.loads(line, name="p.nn")
        assert "error[E0323]" in str(err.value) and "src_key_padding_mask" in str(err.value)


@pytest.mark.parametrize("expr", ["a - a", "a - b", "b - a", "sub(a, other=1.0)"])
def test_subtracting_a_bool_tensor_is_a_located_error(expr):
    # torch refuses `-` on bool tensors; check used to accept it and the model failed at run time
    text = f"model p {{\n  input a: bool[5]\n  input b: long[5]\n  out {expr}\n}}"
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="p.nn")
    assert "error[E0401]" in str(err.value) and "p.nn:4:7" in str(err.value)


@pytest.mark.parametrize("expr", ["x @ ids", "bilinear(x, ids, 2)"])
def test_a_long_second_operand_is_a_located_error(expr):
    # only the first input's dtype was checked; torch refuses float @ long at run time
    text = f"model p {{\n  input x: float[4, 4]\n  input ids: long[4, 4]\n  out {expr}\n}}"
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="p.nn")
    assert "error[E0401]" in str(err.value) and "long" in str(err.value)


@pytest.mark.parametrize("shape,layer,words", [
    ("float[2, 3, 8]", 'conv2d(2, 3, padding=3, padding_mode="reflect")',
     "pads 3 on a side"),
    ("float[2, 3, 8]", 'conv2d(2, 7, padding="same", padding_mode="reflect")', "pads 3 on a"),
    ("float[2, 2]", 'conv1d(2, 3, padding=3, padding_mode="circular")', "has only 2"),
    ("float[2, 3, 8]", "conv2d(2, 3, padding=[1, 1, 1])", "padding has 3 values"),
    ("float[2, 2, 6, 6]", "avgpool3d(3, padding=1)", "smaller than the window"),
])
def test_a_layer_torch_would_refuse_is_a_located_error(shape, layer, words):
    # each of these checked, and the built model failed when it ran (found by a shape sweep of
    # the interpreter's rules against infer)
    text = f"model p {{\n  input x: {shape}\n  out x -> {layer}\n}}"
    with pytest.raises(nnspec.SpecError) as err:
        nnspec.loads(text, name="p.nn")
    assert "error[E0401]" in str(err.value) and words in str(err.value)


# ---- state: ties, shared layers, missing tensors -----------------------------------------------
TIED = """
model tied {
  input ids: long[4]
  e = ids -> wte: embedding(10, 6)
  h = e -> mix: linear(6) -> mix
  out h -> lm_head: linear(10, bias=false, tie=wte)
}"""


def _state_and_inputs(spec):
    model = spec.build().double().eval()
    state = model.state_dict()
    gen = torch.Generator().manual_seed(1)
    fill_state(state, gen)
    return model, state, draw_inputs(spec.ir, gen)


def test_tied_weight_is_read_from_its_source():
    spec = nnspec.loads(TIED, name="tied.nn")
    model, state, inputs = _state_and_inputs(spec)
    with torch.no_grad():
        want = model(*inputs)
    state = {k: v.clone() for k, v in state.items()}
    state["lm_head.weight"] = torch.full_like(state["lm_head.weight"], float("nan"))
    (got,) = interp.run(spec.ir, state, inputs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    del state["lm_head.weight"]
    (again,) = interp.run(spec.ir, state, inputs)
    torch.testing.assert_close(again, want, rtol=1e-12, atol=0)


def test_missing_weight_is_named():
    spec = nnspec.loads(TIED, name="tied.nn")
    _, state, inputs = _state_and_inputs(spec)
    del state["mix.bias"]
    with pytest.raises(interp.StateError, match="mix.bias"):
        interp.run(spec.ir, state, inputs)


def test_run_lowers_an_ir_that_was_never_built():
    # children without a name in the spec get the names the built module would give them
    spec = nnspec.loads(CASES["dropouts"], name="d.nn")
    (out,) = interp.run(spec.ir, {}, [torch.ones(2, 4, 6, 5, dtype=torch.float64)])
    assert out.shape == (2, 4, 1, 1, 30) and torch.all(out == 1)


# ---- failures are located ----------------------------------------------------------------------
LOCATED = "model m {\n  input x: float[4, 6]\n  a: linear(5)\n  b: relu\n  c: linear(3)\n}"


def test_a_wrong_rule_is_reported_at_its_layer(monkeypatch):
    monkeypatch.setitem(interp.KINDS, "relu", lambda layer, w, args, kw, ctx: args[0].abs())
    with pytest.raises(AssertionError, match=r"m\.nn:4: relu `b` is the first layer to differ"):
        check_spec(nnspec.loads(LOCATED, name="m.nn"))


def test_a_wrong_type_is_reported_at_its_layer(monkeypatch):
    monkeypatch.setitem(interp.KINDS, "relu", lambda layer, w, args, kw, ctx: args[0] > 0)
    spec = nnspec.loads(LOCATED, name="m.nn")
    with pytest.raises(interp.InterpError, match=r"m\.nn:4: relu `b` computes \[B, 4, 5\] bool, "
                                                 r"but the checked IR says \[B, 4, 5\]"):
        interp.run(spec.ir, spec.build().double().state_dict(),
                   [torch.zeros(2, 4, 6, dtype=torch.float64)])


def test_a_wrong_summary_is_reported(monkeypatch):
    spec = nnspec.loads(LOCATED, name="m.nn")
    summary = spec.summary()
    wrong = {**summary, "layers": [dict(r) for r in summary["layers"]]}
    wrong["layers"][2]["output_shape"] = ["B", 4, 4]
    monkeypatch.setattr(spec, "summary", lambda: wrong)
    with pytest.raises(AssertionError, match=r"m\.nn:5: linear `c`: the summary says \[B, 4, 4\], "
                                             r"the built module gave \[B, 4, 3\]"):
        check_spec(spec)
    wrong = {**summary, "params": summary["params"] + 1}
    monkeypatch.setattr(spec, "summary", lambda: wrong)
    with pytest.raises(AssertionError,
                       match="the summary counts 54 parameters, the built module has 53"):
        check_spec(spec)
    wrong = {**summary, "flops": summary["flops"] + 1}
    monkeypatch.setattr(spec, "summary", lambda: wrong)
    with pytest.raises(AssertionError, match="flop_counter counted"):
        check_spec(spec)


def test_a_wrong_flop_rule_is_reported_at_its_layer(monkeypatch):
    monkeypatch.setattr(REGISTRY["linear"], "flops", lambda self, ins, outs: 7)
    with pytest.raises(AssertionError, match=r"differing layers: m\.nn:3: `a` summary 14, "
                                             r"flop_counter 480; m\.nn:5: `c` summary 14"):
        check_spec(nnspec.loads(LOCATED, name="m.nn"))


def test_inputs_fit_their_consumers():
    spec = nnspec.loads(CASES["sdpa"] + "\n" + REGRESSIONS["mha_mask_by_position_in_a_list"]
                        .replace("model p", "model q"), name="two.nn", model="sdpa_cases")
    x, m, fm = draw_inputs(spec.ir, torch.Generator().manual_seed(0))
    assert torch.all(m[:, 0] == 1)  # sdpa attends where the mask is nonzero: key 0 stays
    spec = nnspec.loads(REGRESSIONS["mha_mask_by_position_in_a_list"], name="p.nn")
    x, pad = draw_inputs(spec.ir, torch.Generator().manual_seed(0))
    assert torch.all(pad[:, 0] == 0) and set(pad.unique().tolist()) <= {0, 1}
    spec = nnspec.loads(TIED, name="tied.nn")
    for seed in range(5):
        (ids,) = draw_inputs(spec.ir, torch.Generator().manual_seed(seed))
        assert ids.min() >= 0 and ids.max() < 10


def test_default_dtype_is_restored():
    before = torch.get_default_dtype()
    with pytest.raises(RuntimeError):
        with default_dtype(torch.float64):
            raise RuntimeError
    assert torch.get_default_dtype() == before


def test_interpreter_shares_no_code_with_the_emitters():
    # an independent reference: nothing from emit/ or runtime/, no layer's *_source text
    for path in Path(interp.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert not any(part in ("emit", "runtime", "compile") for part in
                               module.strip(".").split(".")), (path.name, module)
            elif isinstance(node, ast.Import):
                assert not any(".emit" in a.name or ".runtime" in a.name for a in node.names)
            elif isinstance(node, ast.Attribute):
                assert not node.attr.endswith("_source") and node.attr != "prelude", \
                    (path.name, node.attr)
