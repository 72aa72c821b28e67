"""Property tests: no spec text, however broken, gets anything from `nnspec.loads` but a checked
spec or a `SpecError` whose every diagnostic renders, and none takes more than a second.

The cases are the valid specs of the repository mutated token by token and line by line,
grammar-shaped specs that put random layer kinds with random arguments on random input shapes, and
deeply nested or very long expressions. Hypothesis runs derandomized, so a failure here fails the
same way everywhere; a case it finds belongs in tests/fuzz/crashes/ (or tests/golden/invalid/
once fixed). test_fuzz_cli.py runs the command line on mutants the same way, and
scripts/fuzz.py at any count.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.layers import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [(p, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "specs").rglob("*.nn"))
         + sorted((ROOT / "tests" / "golden" / "valid").glob("*.nn"))]
MAX_SECONDS = 1.0

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

KINDS = sorted(REGISTRY)
FIELDS = sorted({f for cls in REGISTRY.values() for f in cls.model_fields})
KEYWORDS = ["model", "block", "use", "const", "input", "in", "out", "when", "not", "and", "or",
            "true", "false"]
PUNCT = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "->", ".", ";", "+", "-", "*", "/", "//",
         "%", "@", "==", "!=", "<", ">=", "\n", "\\\n", "#", '"']
NUMBERS = ["0", "1", "-1", "2", "3", "7", "64", "1000", "1_000", "0.5", "1e-5", "1e308", "1e999",
           "2.", ".5", "99999999999999999", "999999999999999999999", "65536", "0007"]
STRINGS = ['"same"', '"valid"', '"zeros"', '"reflect"', '"nearest"', '"tanh"', '"long"', '""',
           '"blocks/resnet.nn"', '"../specs/resnet18.nn"', '"missing.nn"', '"\\q"', '"\\x4"',
           '"."', '"/"']
NAMES = ["x", "h", "s", "y", "planes", "stride", "num_classes", "size", "channels", "min", "max",
         "int", "float", "long", "bool", "ndim", "BasicBlock", "Bottleneck", "self", "class",
         "forward", "tie", "dim", "kernel", "none"]
VOCAB = KEYWORDS + PUNCT + NUMBERS + STRINGS + NAMES + KINDS + FIELDS

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|->|//|==|!=|<=|>=|[A-Za-z_][A-Za-z0-9_]*'
                   r'|\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\n|[ \t]+|#[^\n]*|.', re.S)


def run_case(text: str, path: Path) -> None:
    """Load one spec; anything but success or a well-formed SpecError fails, as does slowness."""
    elapsed = load_once(text, path)
    if elapsed >= MAX_SECONDS:
        # once more, timing this process's CPU too, so a busy machine or a pause is not blamed
        cpu_start = time.process_time()
        again = load_once(text, path)
        elapsed = min(elapsed, again, time.process_time() - cpu_start)
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s:\n{text}"


def load_once(text: str, path: Path) -> float:
    start = time.perf_counter()
    try:
        nnspec.loads(text, name=str(path.relative_to(ROOT)), base=path.parent)
    except nnspec.SpecError as err:
        assert err.diagnostics, "a SpecError without diagnostics"
        for diag in err.diagnostics:
            assert re.fullmatch(r"E\d{4}", diag.code or ""), diag
            rendered = diag.render()
            assert rendered.startswith(f"error[{diag.code}]: {diag.message}"), rendered
            for span in [diag.span] + [s for _, s in diag.notes]:
                if span is not None:
                    lines = span.source.text.count("\n") + 1
                    assert 1 <= span.line <= span.end_line <= lines, (span, rendered)
                    assert span.col >= 1, (span, rendered)
        assert err.render().endswith("found")
    return time.perf_counter() - start


# ---- mutations of valid specs ---------------------------------------------------------------
seeds = st.sampled_from(SEEDS)
vocab = st.sampled_from(VOCAB)
odd_chars = st.characters(blacklist_categories=("Cs",))


@st.composite
def token_mutations(draw):
    path, text = draw(seeds)
    tokens = TOKEN.findall(text)
    for _ in range(draw(st.integers(1, 4))):
        n = len(tokens)
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "insert", "char"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "replace":
            tokens[i] = draw(vocab)
        elif op == "insert":
            tokens.insert(i, " " + draw(vocab) + " ")
        else:
            tokens.insert(i, draw(odd_chars))
        if not tokens:
            tokens = [""]
    return path, "".join(tokens)


@st.composite
def line_mutations(draw):
    path, text = draw(seeds)
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        n = len(lines)
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "join", "truncate"]))
        if op == "delete" and n > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["\t", "    ", "-> ", "when ", "out "])) + lines[i]
        elif op == "join" and i + 1 < n:
            lines[i:i + 2] = [lines[i] + draw(st.sampled_from([" ", "; ", ", "])) + lines[i + 1]]
        elif op == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
    return path, "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\x0c", "\u2028"]))


@settings(FUZZ, max_examples=1200)
@given(token_mutations())
def test_token_mutations_of_valid_specs(case):
    run_case(case[1], case[0])


@settings(FUZZ, max_examples=800)
@given(line_mutations())
def test_line_mutations_of_valid_specs(case):
    run_case(case[1], case[0])


# ---- grammar-shaped random specs ------------------------------------------------------------
SCALARS = ([str(i) for i in range(-3, 9)] + ["16", "32", "64", "100", "255", "1_000",
                                            "99999999999999999"]
           + ["0.0", "0.5", "1.0", "-0.1", "1e-5", "1e30", "1e308"]
           + ["true", "false", "c", "n", "W", "flag", "size(x, 1)", "channels(x)", "W // 2",
              "min(c, 4)", "n * 2", "c - c", "int(1e300)", "-c"] + STRINGS[:8])
LISTS = ["[]", "[1]", "[2, 2]", "[3, 3]", "[1, 2, 3]", "[0, 0]", "[-1]", "[1, -1]", "[c, c]",
         '["same"]', "[true]", "[1.5, 2]", "[4, 4, 4, 4]", "[[1]]"]
values = st.sampled_from(SCALARS * 3 + LISTS)


COMMON = ["linear", "conv2d", "relu", "batchnorm2d", "flatten", "maxpool2d", "layernorm",
          "embedding", "dropout", "softmax", "conv1d", "adaptive_avgpool2d"]
LAYER_KINDS = [k for k in COMMON if k in REGISTRY] + [k for k in KINDS if k not in COMMON]
PLAUSIBLE = ["1", "2", "3", "4", "8", "16", "c", "[2, 2]"]
args_for_required = st.sampled_from(PLAUSIBLE * 4 + SCALARS + LISTS)


@st.composite
def layer_calls(draw, layers=()):
    kind = draw(st.sampled_from(LAYER_KINDS + ["A", "B", "Pair"]))
    cls = REGISTRY.get(kind)
    fields = list(cls.model_fields) if cls else ["c", "k"]
    required = sum(1 for f in cls.model_fields.values() if f.is_required()) if cls else 1
    count = draw(st.sampled_from([min(required, 3)] * 3 + [0, 1, 2, 3]))
    args = [draw(args_for_required if k < required else values) for k in range(count)]
    keys = fields * 3 + ["kernel", "bogus"] + (["tie"] * 2 if layers else [])
    for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
        args.append(f"{key}={draw(st.sampled_from(list(layers)) if key == 'tie' else values)}")
    if not args and draw(st.booleans()):
        return kind
    return f"{kind}({', '.join(args)})"


@st.composite
def statements(draw, tensors: list[str], layers: list[str], i: int):
    layer = draw(layer_calls(layers))
    a, b = draw(st.sampled_from(tensors)), draw(st.sampled_from(tensors))
    form = draw(st.integers(0, 11))
    if form == 0:
        name = draw(st.sampled_from(["fc", "emb", f"l{i}"]))
        layers.append(name)
        return f"{name}: {layer}"
    if form == 1:
        return f"t{i} = {a} -> {layer} -> {draw(layer_calls(layers))}"
    if form == 2:
        return f"{layer} when {draw(st.sampled_from(['flag', 'not flag', 'n > 2', 'c']))}"
    if form == 3:
        layers.append(f"r{i}")
        count = draw(st.sampled_from(["0", "1", "2", "3", "n", "1000", "10001"]))
        return f"r{i}: {layer} * {count}"
    if form == 4:
        return f"s{i}: [{layer}, {draw(layer_calls(layers))}]"
    if form == 5:
        return f"t{i} = {a} {draw(st.sampled_from(['+', '-', '*', '/', '@']))} {b}"
    if form == 6:
        return f"t{i} = cat({a}, {b}, dim={draw(st.integers(-5, 5))})"
    if form == 7:
        return f"t{i} = {draw(st.sampled_from(['B', 'Pair']))}({a}, {draw(values)})"
    if form == 8:
        return f"t{i}, u{i} = {a} -> chunk(2, dim={draw(st.integers(-2, 3))})"
    if form == 9 and layers:
        return draw(st.sampled_from(layers))  # reuse a named layer: shared weights
    if form == 10:
        return f"t{i} = {layer}({a})"
    return layer


@st.composite
def random_specs(draw):
    dims = draw(st.lists(st.sampled_from([1, 2, 3, 4, 7, 8, 16, 32, 4096, 10**17]), min_size=1,
                         max_size=4))
    dtype = draw(st.sampled_from(["float", "float", "float", "long", "bool"]))
    alias = draw(st.sampled_from(["[linear(c), relu]", "conv2d(c, 3)", "relu", "B(c)", "[A(c)]",
                                  "x", "3", "[relu] * n"]))
    lines = [f"const W = {draw(st.sampled_from(['8', '16', '0', '3 // 0', 'W', '2 * 3']))}",
             f"block A(c = 4) = {alias}",
             "block B(c, k = 3) {", "  in x",
             f"  {draw(layer_calls())}", "}",
             "block Pair(c) {", "  in x, y",
             f"  out {draw(st.sampled_from(['x + y', 'cat(x, y, dim=1)', 'x @ y', 'y']))}", "}",
             f"model m(n = {draw(st.integers(0, 4))}, c = {draw(st.sampled_from([1, 4, 8]))}, "
             f"flag = {draw(st.sampled_from(['true', 'false']))}) {{",
             f"  input x: {dtype}[{', '.join(map(str, dims))}]"]
    tensors, layers = ["x"], []
    if draw(st.booleans()):
        lines.append(f"  input x2: {dtype}[{', '.join(map(str, dims))}]")
        tensors.append("x2")
    for i in range(draw(st.integers(1, 6))):
        lines.append("  " + draw(statements(tensors, layers, i)))
        if lines[-1].lstrip().startswith((f"t{i}", f"t{i},")):
            tensors.append(f"t{i}")
    if draw(st.booleans()):
        outs = draw(st.lists(st.sampled_from(tensors), min_size=1, max_size=2))
        lines.append(f"  out {', '.join(outs)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=1200)
@given(random_specs())
def test_grammar_shaped_random_specs(text):
    run_case(text, ROOT / "tests" / "golden" / "fuzz.nn")


# ---- deeply nested and long expressions -----------------------------------------------------
@st.composite
def deep_specs(draw):
    n = draw(st.sampled_from([1, 10, 50, 90, 99, 100, 101, 150, 400, 1500]))
    inner = draw(st.sampled_from([
        "(" * n + "4" + ")" * n, "-" * n + "4", "not " * n + "true", " + ".join(["1"] * n),
        "[" * n + "4" + "]" * n, "x" + " -> relu" * n, " + ".join(["x"] * n), "x" + ".a" * n,
        "relu" + "()" * n, "[" * n + "relu" + "]" * n, "min(" * n + "4" + ", 1)" * n,
        "(relu * 2)" + " * 2" * n, "x" + " -> relu when true" * n]))
    form = draw(st.sampled_from(["  out {}", "  y = {}", "  fc: linear({})", "  {}"]))
    return ("block B(c) {\n  in x\n  out x\n}\nmodel m {\n  input x: float[4]\n"
            + form.format(inner) + "\n}\n")


@settings(FUZZ, max_examples=200)
@given(deep_specs())
def test_deeply_nested_specs(text):
    run_case(text, ROOT / "tests" / "golden" / "fuzz.nn")
