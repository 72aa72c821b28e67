"""Inputs that gave Python tracebacks in the grammar-mutation fuzzer (issue 9, defect 7, the
parser and IR part): deep nesting, huge integer literals, and child names asked for before lower()
had named them. Each is now a located diagnostic, or works; the exact texts are golden fixtures
(syntax_brackets_nested_too_deeply, syntax_signs_nested_too_deeply, reuse_inner_layer)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.lang.diagnostics import SpecError
from nnspec.lang.parse import parse

SPECS = Path(__file__).resolve().parent.parent / "specs"
HEAD = "model m() {\n  input x: float[4]\n"


def _error(text: str) -> str:
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        nnspec.loads(text)
    assert time.perf_counter() - start < 30  # refused before the parser works through it all
    (diag,) = err.value.diagnostics
    return f"{diag.code} {diag.span.line}:{diag.span.col}"


@pytest.mark.parametrize("open_, close", [("(", ")"), ("[", "]")])
def test_200k_nested_brackets(open_, close):
    n = 200_000
    body = f"  out x -> linear({open_ * n}4{close * n})\n}}\n"
    assert _error(HEAD + body) == "E0107 3:" + str(len("  out x -> linear(") + 100)  # linear( counts


def test_unclosed_deep_brackets_and_sign_runs():
    assert _error(HEAD + "  out " + "(" * 300_000 + "x\n}\n").startswith("E0107 3:")
    assert _error(HEAD + "  out x * " + "-" * 300_000 + "1\n}\n") == "E0107 3:11"
    assert _error(HEAD + "  out x -> relu when " + "not " * 300_000 + "true\n}\n") \
        == "E0107 3:22"


def test_brackets_in_strings_and_comments_do_not_count():
    text = HEAD + "  # " + "(" * 500 + "\n  out x -> linear(4)\n}\nconst s = \"" + "[" * 500 + "\"\n"
    nnspec.loads(text)


def test_100_nested_brackets_are_still_fine():
    spec = nnspec.loads(HEAD + "  out " + "(" * 100 + "x" + ")" * 100 + " -> linear(2)\n}\n")
    assert spec.summary()["params"] == 10


def test_5000_digit_integers():
    assert _error(HEAD + "  out x -> linear(" + "9" * 5000 + ")\n}\n") == "E0104 3:19"
    # leading zeros used to reach int() with all 5,001 digits: Python's digit limit raised
    lit = parse("const n = " + "0" * 5000 + "4\n").items[0].value
    assert lit.value == 4
    assert nnspec.loads(HEAD + "  out x -> linear(" + "0" * 5000 + "4)\n}\n").summary()["params"] == 20


def test_unnamed_layer_in_a_pipelined_spec():
    """partition() runs before lower(); an unnamed child made child_name assert."""
    text = (SPECS / "tiny_gpt_pipe.nn").read_text()
    text = text.replace("lm_head: linear(vocab_size, bias=false, tie=transformer.wte)",
                        "linear(vocab_size, bias=false)")
    spec = nnspec.loads(text, base=SPECS)
    assert [u.path for u in spec.partition.units][-1] == "linear"
    assert "linear" in spec.summary()["pipeline"][1]["layers"]


def test_reusing_a_layer_inside_a_block_by_its_path():
    """`y -> a.fc` called a grandchild: child_name did not know it (KeyError on main)."""
    spec = nnspec.load(Path(__file__).resolve().parent / "golden" / "valid" / "reuse_inner_layer.nn")
    model = spec.build().double()
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    w = {k: v.detach() for k, v in model.state_dict().items()}
    x = torch.randn(2, 4, dtype=torch.float64)

    def fc(h, p):
        return h @ w[f"{p}.fc.weight"].T + w[f"{p}.fc.bias"]

    want = fc(torch.relu(fc(torch.relu(fc(x, "a")), "b")), "a")
    torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-12)
    assert [u.path for u in spec.partition.units if u.path] == ["a.fc", "b.fc", "a.fc"]


@pytest.mark.parametrize("statement", [
    "  y = x" + " + x" * 100_000,              # a long sum: the parser took seconds on it
    "  y = x" + "()" * 200_000,                # chained calls
    "  y = x" + "\n    -> relu" * 20_000,      # a flow continued over 20,000 lines
    "  y = x -> [" + ",\n".join(["relu"] * 20_000) + "]",   # new lines inside brackets
])
def test_a_statement_over_the_token_limit_is_refused_before_parsing(statement):
    start = time.process_time()
    assert _error(HEAD + statement + "\n  out y\n}\n") == "E0107 3:1"
    assert time.process_time() - start < 1.0


def test_many_short_statements_are_not_one_long_one():
    lines = "".join(f"  h{i} = x -> relu\n" for i in range(3_000))
    spec = nnspec.loads(HEAD + lines + "  out x\n}\n")  # the limit counts per statement
    assert spec is not None
