"""Mutants of real specs: the inputs of the mutation fuzzer.

`mutant(seed, i)` is a pure function of its arguments, so case i of a run can be made again from
its number alone (scripts/fuzz.py's worker process relies on this). Each mutant starts from one of
the repository's specs (specs/, tests/golden/valid and tests/golden/invalid) and is written beside
it in a copy of the tree, so its `use` lines still find their files. The families:

- token: delete, duplicate or swap tokens; replace or insert keywords, punctuation, numbers,
  strings, layer kinds and argument names; an odd character;
- line: delete, duplicate, swap, indent, join, truncate lines; splice a line from another spec;
- bytes: random bytes, alone or dropped into a spec (often not UTF-8);
- deep: nesting of parentheses, lists, unary signs, `not`, calls and flows, 100 to 1,500,000 deep
  (up to 3 MB);
- huge: literals like 1e999 or a 100,000-digit integer, long strings, long lines, long names.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED_DIRS = ("specs", "tests/golden/valid", "tests/golden/invalid")

KEYWORDS = ["model", "block", "use", "const", "input", "in", "out", "when", "not", "and", "or",
            "true", "false", "train", "parallel", "compress", "weights", "self", "none"]
PUNCT = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "->", ".", ";", "+", "-", "*", "/", "//",
         "%", "@", "==", "!=", "<", ">=", "\n", "\\\n", "#", '"', "'", "\t", "\r", "\x00", "\x0c"]
NUMBERS = ["0", "1", "-1", "2", "3", "64", "1000", "1_000", "0.5", "1e-5", "1e308", "1e999",
           "-1e999", "2.", ".5", "99999999999999999", "999999999999999999999", "65536", "0007",
           "0x10", "1__0", "9" * 5000, "0" * 5000 + "4", "1" + "0" * 400 + ".0", "1e-999", "nan",
           "inf"]
STRINGS = ['"same"', '"valid"', '"zeros"', '"tanh"', '""', '"blocks/resnet.nn"', '"missing.nn"',
           '"\\q"', '"\\x4"', '"\\x00"', '"."', '"/"', '"../"', '"' + "a" * 5000 + '"',
           '"\\u2028"', '"\\N{bogus}"', '"""', '"\\"']
NAMES = ["x", "h", "y", "planes", "stride", "num_classes", "size", "channels", "min", "max",
         "int", "float", "long", "bool", "ndim", "BasicBlock", "Bottleneck", "class", "forward",
         "tie", "dim", "kernel", "digits", "npz", "epochs", "zero", "lr", "__import__", "_" * 300]
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|->|//|==|!=|<=|>=|[A-Za-z_][A-Za-z0-9_]*'
                   r'|\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\n|[ \t]+|#[^\n]*|.', re.S)

FAMILIES = [("token", 46), ("line", 32), ("bytes", 8), ("deep", 7), ("huge", 7)]


@dataclass(frozen=True)
class Mutant:
    """One fuzz input: `data` is written to `path` (relative to the copied tree) and checked."""

    number: int
    family: str
    origin: str   # the spec it was made from, relative to the repository
    path: str     # where it is written, beside its origin
    data: bytes

    @property
    def name(self) -> str:
        return f"{self.family}-{self.number:05d}"


@lru_cache(maxsize=1)
def seeds() -> tuple[tuple[str, str], ...]:
    """(path relative to the repository, text) of every spec the mutants start from."""
    found = []
    for folder in SEED_DIRS:
        for path in sorted((ROOT / folder).rglob("*.nn")):
            found.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
    return tuple(found)


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    from nnspec.layers import REGISTRY

    fields = sorted({f for cls in REGISTRY.values() for f in cls.model_fields})
    return tuple(KEYWORDS + PUNCT + NUMBERS + STRINGS + NAMES + sorted(REGISTRY) + fields)


def mutant(seed: int, number: int) -> Mutant:
    """The `number`th mutant of a run with `seed`."""
    rng = random.Random(f"nnspec-fuzz:{seed}:{number}")
    family = rng.choices([f for f, _ in FAMILIES], [w for _, w in FAMILIES])[0]
    origin, text = rng.choice(seeds())
    data = MAKERS[family](rng, text)
    folder = origin.rsplit("/", 1)[0]
    return Mutant(number, family, origin, f"{folder}/fuzz-case-{number}.nn", data)


def _tokens(rng: random.Random, text: str) -> bytes:
    tokens = TOKEN.findall(text) or [""]
    vocab = vocabulary()
    for _ in range(rng.randint(1, 5)):
        i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
        op = rng.choice(["delete", "delete", "duplicate", "swap", "replace", "replace", "insert",
                         "char"])
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens[i:i] = tokens[i:j + 1][:50] or [tokens[i]]
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "replace":
            tokens[i] = rng.choice(vocab)
        elif op == "insert":
            tokens.insert(i, f" {rng.choice(vocab)} ")
        else:
            tokens.insert(i, chr(rng.choice([rng.randrange(32), rng.randrange(0x80, 0x800),
                                             0x2028, 0xfeff, 0x202e, 0x1F600])))
        tokens = tokens or [""]
    return "".join(tokens).encode("utf-8", "surrogatepass")


def _lines(rng: random.Random, text: str) -> bytes:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        n = len(lines)
        i, j = rng.randrange(n), rng.randrange(n)
        op = rng.choice(["delete", "duplicate", "swap", "indent", "join", "truncate", "splice",
                         "splice"])
        if op == "delete" and n > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = rng.choice(["\t", "    ", "-> ", "when ", "out ", "+ ", "}", "{"]) + lines[i]
        elif op == "join" and i + 1 < n:
            lines[i:i + 2] = [lines[i] + rng.choice([" ", "; ", ", ", " -> "]) + lines[i + 1]]
        elif op == "truncate":
            lines[i] = lines[i][:rng.randint(0, len(lines[i]))]
        elif op == "splice":
            other = rng.choice(seeds())[1].split("\n")
            start = rng.randrange(len(other))
            lines[i:i] = other[start:start + rng.choice([1, 1, 2, 5])]
    ending = rng.choice(["", "\n", "\r\n", "\x0c", "\u2028", "\x00"])
    return ("\n".join(lines) + ending).encode("utf-8")


def _bytes(rng: random.Random, text: str) -> bytes:
    noise = rng.randbytes(rng.choice([0, 1, 16, 300, 4000]))
    data = text.encode("utf-8")
    form = rng.choice(["alone", "insert", "flip", "truncate"])
    if form == "alone":
        return noise
    at = rng.randrange(len(data) + 1)
    if form == "insert":
        return data[:at] + noise + data[at:]
    if form == "flip":
        return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]
    return data[:at]  # may cut a multi-byte character in two


DEEP_SHAPES = [
    "({o}4{c})", "[{o}4{c}]", "{neg}4", "{nots}true", "x{flows}", "relu{calls}",
    "min({o}4, 1{c})", "x{dots}", "{{{o}", "({o}x{c}) -> relu", "[{o}relu{c}]", "1{sums}",
]


def _deep(rng: random.Random, text: str) -> bytes:
    # the deepest are rare: each takes seconds, and more of them find nothing new
    n = rng.choices([100, 500, 1000, 5000, 20000, 100000, 1500000], [20, 20, 20, 15, 15, 6, 2])[0]
    shape = rng.choice(DEEP_SHAPES)
    o, c = rng.choice([("(", ")"), ("[", "]"), ("f(", ")")])
    inner = shape.format(o=o * n, c=c * n, neg="-" * n, nots="not " * n, flows=" -> relu" * n,
                         calls="()" * n, dots=".a" * n, sums=" + 1" * n)
    form = rng.choice(["  out {}", "  y = {}", "  fc: linear({})", "  {}", "const K = {}",
                       "  input x: float[{}]"])
    line = form.format(inner)
    return _into_model(rng, text, line)


def _huge(rng: random.Random, text: str) -> bytes:
    digits = rng.choice([4300, 4301, 10 ** 5])
    value = rng.choice(["1e999", "-1e999", "9" * digits, "0" * digits + "4",
                        "1" + "0" * digits + ".5", "1e" + "9" * 50, "0." + "0" * digits + "1",
                        "1_" * (digits // 2) + "1"])
    piece = rng.choice(["a", "\\\\", "\\n", "é"])
    long_string = '"' + piece * rng.choice([10 ** 4, 10 ** 6]) + '"'
    name = "n" * rng.choice([1000, 10 ** 5])
    line = rng.choice([
        f"  fc: linear({value})", f"  input x: float[{value}]", f"const K = {value}",
        f"  y = x -> dropout({value})", f"use {long_string}",
        f"  fc: conv2d(4, 3, padding={long_string})",
        f"  {name} = x", f"  fc: {name}(4)", "  y = x" + " -> relu" * 20000,
        "# " + "x" * 10 ** 6, "  " + " " * 10 ** 6 + "y = x", f"model {name}() {{",
        f"  input x: float[{', '.join(['2'] * 5000)}]",
    ])
    return _into_model(rng, text, line)


def _into_model(rng: random.Random, text: str, line: str) -> bytes:
    """`line` in place of a random line of `text`, or inside a minimal model of its own."""
    if rng.random() < 0.5:
        lines = text.split("\n")
        lines[rng.randrange(len(lines))] = line
        return "\n".join(lines).encode("utf-8")
    return f"model m() {{\n  input x: float[4]\n{line}\n  out x\n}}\n".encode("utf-8")


MAKERS = {"token": _tokens, "line": _lines, "bytes": _bytes, "deep": _deep, "huge": _huge}
