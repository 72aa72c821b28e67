"""Injection fuzzer: hostile text in every place a spec or the command line supplies text, through
every command that builds or writes source (issue 9, defect 4: a spec is data).

Hostile strings (quotes and triple quotes, backslashes, line breaks of every kind, `#`, `{}`,
NUL, shell syntax) carry a payload that would create a canary file if it ever ran as Python or
shell. They go into model parameter defaults, block arguments passed down two blocks, `--set`
model parameters and train/parallel settings, `use` paths, the spec's file and folder names,
string layer arguments and train/compress section strings; the commands are compile (then
`import model` in a fresh interpreter), Spec.build(), the launch.sh it writes (run under bash with
a stand-in `deepspeed`), train for one step, export-weights --spec and compress write-back.
Each command must leave the canary absent and the sandbox (everything but the output folders)
unchanged, and give the string back as data: inside a literal or comment of model.py that reads
back to it, in JSON, as one argv item, as the same value in the written-back spec, or refused
with a diagnostic.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import io as _io
import json
import os
import random
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main
from nnspec.emit.text import comment_text
from nnspec.emit.verify import verify_source

PWNED = "pwned"  # a relative canary: a payload in a file name cannot hold a "/"


def payloads(target: str) -> list[str]:
    """Hostile strings whose payload, if it ever ran, would create `target`."""
    touch = f"__import__('os').system('touch {target}')"
    opened = f"open('{target}', 'w')"
    return [
        f'x"""+{touch}+"""',
        f"x'''+{touch}+'''",
        f'x"+{opened}+"',
        f"x'+{opened}+'",
        f"\\\n{touch}\n#",
        "\\",  # a lone backslash would escape the closing quote
        f"\r{touch}\r\n",
        f"\u2028{touch}\u2029",
        f"\x85{touch}\x0c\x0b\x1c\x1d\x1e",
        f"#{{{touch}}} {{}} {{0}} %s",
        f"\x00{touch}",
        f"$(touch {target}) `touch {target}`; touch {target} '\"",
    ]


def random_payloads(target: str, count: int, seed: int = 9) -> list[str]:
    """Seeded random mixes of the dangerous characters and the payload."""
    pieces = ['"', '"""', "'", "'''", "\\", "\n", "\r", "\u2028", "\u2029", "\x85", "\x0c", "#",
              "{", "}", "\x00", "$(", "`", ";", f"__import__('os').system('touch {target}')",
              "+", ")", "(", " "]
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(count)]


def nn_string(text: str) -> str:
    """`text` in .nn string syntax (Python escapes, as the parser reads them)."""
    return json.dumps(text)


def nn_raw_string(text: str) -> str:
    """`text` in .nn string syntax with only what must be escaped escaped: \\r, NUL, U+2028 and
    the other unprintables stay raw characters in the file (the parser may refuse some)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def file_safe(text: str) -> bool:
    return "/" not in text and "\x00" not in text and 0 < len(text.encode()) < 200 \
        and text not in (".", "..")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file, folder and link under root with its content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            if path.is_symlink():
                out[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                out[str(path)] = ("dir",)
            else:
                out[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The folder every input lives in (and the working directory); outputs go to tmp_path/out."""
    box = tmp_path / "sandbox"
    box.mkdir()
    monkeypatch.chdir(box)
    return box


class Guard:
    """Runs commands and checks that nothing ran: no canary, the sandbox unchanged."""

    def __init__(self, sandbox: Path, canary: Path):
        self.sandbox, self.canary = sandbox, canary
        self.before = snapshot(sandbox)

    def check(self, what: str) -> None:
        assert not self.canary.exists(), f"{what}: the payload ran"
        assert not any(p.name == PWNED for p in self.sandbox.rglob("*")), f"{what}: payload ran"
        assert snapshot(self.sandbox) == self.before, f"{what} changed files outside its output"

    def cli(self, *argv: str, ok: bool | None = None) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        text = err.getvalue()
        assert "Traceback" not in text, text
        assert code in (0, 1, 2), (argv, code, text)
        if code:
            assert "error" in text, (argv, text)  # refused with a diagnostic, not silently
        if ok is not None:
            assert (code == 0) == ok, (argv, code, text)
        self.check(" ".join(map(str, argv[:1])))
        return code, text


# ---- model.py: the hostile text is inside literals and comments only --------------------------
def token_spans(source: str) -> list[tuple[int, int, str, str]]:
    """(start, end, type, text) of each string and comment token, as text offsets."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans = []
    for tok in tokenize.generate_tokens(_io.StringIO(source).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            a = starts[tok.start[0] - 1] + tok.start[1]
            b = starts[tok.end[0] - 1] + tok.end[1]
            spans.append((a, b, tokenize.tok_name[tok.type], tok.string))
    return spans


def docstrings(source: str) -> list[str]:
    tree = ast.parse(source)
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    return [d for d in (ast.get_docstring(n, clean=False) for n in nodes) if d]


def shown_forms(text: str) -> set[str]:
    """How a string value may be shown in a signature: as is, or with .nn/Python escapes."""
    return {text, json.dumps(text)[1:-1], repr(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}


def assert_source_holds_data(source: str, values: list[str], names: list[str],
                             markers: list[str]) -> None:
    verify_source(source)
    spans = token_spans(source)
    for marker in markers:  # every payload occurrence lies inside a string or a comment
        at = source.find(marker)
        while at >= 0:
            assert any(a <= at and at + len(marker) <= b for a, b, _, _ in spans), (
                f"payload outside a literal or comment at offset {at}:\n"
                f"{source[max(0, at - 200):at + 200]}")
            at = source.find(marker, at + 1)
    docs = "\n".join(docstrings(source))
    for value in values:
        assert any(form in docs for form in shown_forms(value)), f"{value!r} is not in a docstring"
    comments = "\n".join(t for _, _, kind, t in spans if kind == "COMMENT")
    for name in names:
        assert comment_text(name) in comments or name in docs, f"{name!r} is not shown"


# ---- the spec with every hostile string at once ------------------------------------------------
BLOCKS = """block Inner(s, n) {
  in x
  out x -> fc: linear(n) -> relu
}
block Outer(s, n) {
  in x
  out x -> inner: Inner(s, n)
}
"""
TRAIN = """train {
  data = synthetic(size=64)
  steps = 1
  batch_size = 8
  checkpoint_every = 1
}
compress {
  prune = channels(0.5, on=[linear])
  latency_runs = 1
  latency_batch = 1
}
"""


def write_spec(folder: Path, name: str, strings: list[str], includes: list[str]) -> Path:
    """A spec whose model parameters default to `strings`, whose blocks get them as arguments
    (passed on to an inner block), and which includes a file of each name in `includes`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"use {nn_string(inc + '.nn')}" for inc in includes] + [BLOCKS]
    params = ", ".join([f"p{i} = {nn_string(s)}" for i, s in enumerate(strings)] + ['q = "z"'])
    lines += [f"model m({params}) {{", "  input x: float[4]"]
    last = "x"
    for i, s in enumerate(strings):
        lines.append(f"  h{i} = {last} -> o{i}: Outer({nn_string(s)}, 4)")
        last = f"h{i}"
    for i, inc in enumerate(includes):
        (folder / f"{inc}.nn").write_text(
            f"block Inc{i}(n) {{\n  in x\n  out x -> fc: linear(n)\n}}\n", encoding="utf-8")
        lines.append(f"  g{i} = {last} -> inc{i}: Inc{i}(4)")
        last = f"g{i}"
    lines += [f"  out {last} -> mid: linear(8) -> relu -> head: linear(3)", "}", TRAIN]
    spec = folder / f"{name}.nn"
    spec.write_text("\n".join(lines), encoding="utf-8")
    return spec


def fake_runner(bin_dir: Path) -> None:
    """`deepspeed` that records its argv (NUL-separated) in $ARGV_OUT, and an `nnspec`."""
    bin_dir.mkdir()
    (bin_dir / "deepspeed").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done '
                                       '> "$ARGV_OUT"\n')
    (bin_dir / "nnspec").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)


def test_every_command_gives_hostile_text_back_as_data(sandbox, tmp_path):
    canary = tmp_path / "canary"
    strings = payloads(str(canary))
    names = [s for s in payloads(PWNED) if file_safe(s)]
    folder_name = next(n for n in names if "\n" in n)
    spec = write_spec(sandbox / folder_name, names[0] + "_root", strings, names)
    override = payloads(str(canary))[0] + "\u2028--set"
    sets = ["--set", f"q={nn_string(override)}",
            "--set", f"parallel.nvme_path={nn_string(strings[4])}"]
    markers = [str(canary), f"touch {PWNED}"]
    out = tmp_path / "out"
    guard = Guard(sandbox, canary)

    # compile: every output holds the text as data
    guard.cli("compile", spec, "-o", out / "compiled", *sets, ok=True)
    source = (out / "compiled" / "model.py").read_text(encoding="utf-8")
    shown_spec = str(spec.relative_to(sandbox))  # as display_path shows it: under the cwd
    assert_source_holds_data(source, strings + [override, shown_spec], names, markers)
    summary = json.loads((out / "compiled" / "summary.json").read_text(encoding="utf-8"))
    assert all(any(f in summary["model"] for f in shown_forms(s)) for s in strings + [override])
    json.loads((out / "compiled" / "ds_config.json").read_text(encoding="utf-8"))

    # launch.sh under bash: the spec path and each --set arrive as single argv items, unchanged
    fake_runner(tmp_path / "bin")
    argv_file = tmp_path / "argv"
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "ARGV_OUT": str(argv_file)}
    run = subprocess.run(["bash", str(out / "compiled" / "launch.sh"), "--extra=a b"], env=env,
                         cwd=sandbox, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    argv = argv_file.read_text(encoding="utf-8").split("\0")[:-1]
    at = argv.index("train")
    assert argv[at + 1:] == [str(spec), f"--set={sets[1]}", f"--set={sets[3]}", "--extra=a b"]
    guard.check("launch.sh")

    # `import model` in a fresh interpreter builds and runs the module
    probe = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import model; "
             "print(tuple(model.Model()(torch.zeros(2, 4)).shape))")
    run = subprocess.run([sys.executable, "-c", probe, str(out / "compiled")], cwd=sandbox,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "(2, 3)", run.stderr
    guard.check("import model")

    # Spec.build() runs the same text
    built = nnspec.load(spec, q=override)
    assert built.source == source
    assert built.build()(torch.zeros(2, 4)).shape == (2, 3)
    guard.check("build()")

    # train one step, export its checkpoint against the spec, prune and write the spec back
    guard.cli("train", spec, "--out", out / "run", "--no-progress", *sets[:2], ok=True)
    guard.cli("export-weights", out / "run" / "checkpoints", "-o", out / "w.pt", "--spec", spec,
              *sets[:2], ok=True)
    guard.cli("compress", spec, "-o", out / "pruned", "--weights", out / "run" / "model.safetensors",
              ok=True)
    written = next((out / "pruned").glob("*.nn"))
    again = nnspec.loads(written.read_text(encoding="utf-8"), name=str(written), base=spec.parent)
    assert again.ir.signature == nnspec.load(spec).ir.signature, "write-back changed a string"
    assert_source_holds_data(again.source, strings, names, markers)
    guard.check("write-back")


@pytest.mark.parametrize("encode", [nn_string, nn_raw_string], ids=["escaped", "raw"])
def test_build_gives_each_hostile_string_back(sandbox, tmp_path, encode):
    """Spec.build() for each string alone, as a parameter default, a block argument and the
    spec's name, written with escapes and with raw unprintable characters."""
    canary = tmp_path / "canary"
    guard = Guard(sandbox, canary)
    for text in payloads(str(canary)) + random_payloads(str(canary), 24):
        spec = (f"{BLOCKS}model m(p = {encode(text)}) {{\n  input x: float[4]\n"
                f"  out x -> o: Outer({encode(text)}, 4)\n}}\n")
        try:
            built = nnspec.loads(spec, name=text)
        except nnspec.SpecError as err:  # refused: only for a raw character the grammar refuses
            assert encode is nn_raw_string and "error[" in err.render(), err.render()
            continue
        assert_source_holds_data(built.source, [text], [], [str(canary)])
        assert built.build()(torch.zeros(1, 4)).shape == (1, 4)
        title = built.summary_table().splitlines()[0]  # printed by `nnspec summary`
        assert title.isprintable() and title.startswith("m(p=")
        guard.check(repr(text))


def test_hostile_text_in_settings_and_layer_arguments_is_refused_or_data(sandbox, tmp_path):
    """Strings where a spec allows none (layer arguments, metrics, data paths, teachers, parallel
    settings) are refused with a diagnostic, or kept as data in the JSON nnspec writes."""
    canary = tmp_path / "canary"
    out = tmp_path / "out"
    model = "model m {{\n  input x: float[1, 8, 8]\n  out x -> {layer} -> flatten\n}}\n"
    layer_args = ["c: conv2d(4, 3, padding={s})", "g: gelu(approximate={s})",
                  "u: upsample(scale_factor=2, mode={s})"]
    sections = ["train {{\n  data = npz({s})\n  steps = 1\n}}\n",
                "train {{\n  metrics = [{s}]\n}}\n",
                "compress {{\n  distill = teacher({s}, weights={s})\n}}\n",
                "compress {{\n  prune = magnitude(0.5, on=[{s}])\n}}\n"]
    for i, text in enumerate(payloads(str(canary))):
        s = nn_string(text)
        layer = layer_args[i % len(layer_args)].format(s=s)
        spec = sandbox / f"s{i}.nn"
        spec.write_text(model.format(layer=layer), encoding="utf-8")
        guard = Guard(sandbox, canary)
        guard.cli("check", spec, ok=False)
        spec.write_text(model.format(layer="relu") + sections[i % len(sections)].format(s=s),
                        encoding="utf-8")
        guard = Guard(sandbox, canary)
        if sections[i % len(sections)].startswith("train"):  # refused before any training
            guard.cli("train", spec, "--out", out / f"t{i}", "--no-progress", ok=False)
        else:
            guard.cli("check", spec)
        for setting in ("parallel.partition", "parallel.nvme_path",
                        "parallel.activation_checkpointing", "parallel.stage_boundaries",
                        "train.metrics"):
            value = nn_string(("type:" if setting.endswith("partition") else "") + text)
            if setting.endswith(("checkpointing", "boundaries", "metrics")):
                value = f"[{value}]"
            target = out / f"c{i}-{setting}"
            code, _ = guard.cli("compile", spec, "-o", target, "--set", f"{setting}={value}")
            if code == 0:
                json.loads((target / "ds_config.json").read_text(encoding="utf-8"))
                verify_source((target / "model.py").read_text(encoding="utf-8"))
