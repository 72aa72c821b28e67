"""Write a structurally pruned model back as a .nn spec: the same text with each pruned layer's
width (its first argument: out_channels, out_features) replaced by the number it keeps, and the
compress section dropped (it has been applied). The new spec is checked by building it and
loading the pruned weights strictly."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from nnspec.compress.checked import model_layers
from nnspec.compress.errors import CompressError


def write_back(spec, model: nn.Module):
    """(new spec text, its checked Spec) for a pruned copy of `spec`'s model."""
    from nnspec.compile import loads
    from nnspec.lang.diagnostics import SpecError

    source = spec.program.root_source
    text = source.text
    edits: dict[tuple[int, int], tuple[int, int, str]] = {}   # start -> (end, width, layer)
    for layer in model_layers(spec.ir):
        if "weight" not in layer.params or layer.kind not in ("conv1d", "conv2d", "conv3d",
                                                              "linear"):
            continue
        width = model.get_submodule(layer.name).weight.shape[0]
        if width == layer.params["weight"][0]:
            continue
        span = layer.span
        if span is None or span.source is not source:
            raise CompressError(f"cannot write the pruned `{layer.name}` back: it is defined in "
                                "an included file", "define the pruned layers in the spec itself")
        start, end = _offset(text, span.line, span.col), _offset(text, span.end_line, span.end_col)
        previous = edits.get((start, end))
        if previous is not None and previous[1] != width:
            raise CompressError(f"cannot write the pruned model back: `{previous[2]}` and "
                                f"`{layer.name}` are written once in the spec but keep "
                                f"{previous[1]} and {width} channels",
                                "write the layers out separately, or skip one of them")
        edits[(start, end)] = (end, width, layer.name)
    for (start, end), (_, width, name) in sorted(edits.items(), reverse=True):
        text = text[:start] + _set_width(text[start:end], width, name) + text[end:]
    if "compress" in spec.program.sections:
        s, e = _section_bounds(text)
        text = text[:s] + "# compress section applied by `nnspec compress`" + text[e:]
    name = f"{Path(spec.source_name).stem}_pruned.nn"
    try:
        new = loads(text, name=name, base=Path(spec.source_name).resolve().parent)
    except SpecError as err:
        raise CompressError(f"the pruned spec does not check:\n{err.render()}") from None
    try:
        new.build().load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as err:
        raise CompressError(f"the pruned spec does not load the pruned weights: "
                            f"{str(err).splitlines()[0]}") from None
    return text, new


def _offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[:line - 1]) + col - 1


def _section_bounds(text: str) -> tuple[int, int]:
    """Where `compress { ... }` starts and ends (braces counted, strings and comments skipped)."""
    import re

    m = re.search(r"(?m)^\s*compress\s*\{", text)
    start = m.start() + len(m.group(0)) - len(m.group(0).lstrip())
    depth, i, quote = 0, m.end() - 1, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":  # an escape such as \" or \\ stays inside the string
                i += 2
                continue
            quote = None if ch == quote else quote
        elif ch == '"':
            quote = ch
        elif ch == "#":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return start, i + 1
        i += 1
    raise CompressError("cannot find the end of the compress section")


def arg_end(call: str, start: int) -> int:
    """Where the call argument starting at `start` ends: its `,` or the call's `)` (brackets
    inside the argument are skipped)."""
    depth, i = 0, start
    while i < len(call):
        ch = call[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        i += 1
    return i


def _set_width(call: str, width: int, name: str) -> str:
    """`conv2d(64, 3, padding=1)` -> `conv2d(32, 3, padding=1)` (the first argument)."""
    open_at = call.find("(")
    if open_at < 0:
        raise CompressError(f"cannot write the pruned `{name}` back: `{call}` has no width "
                            "argument")
    i = arg_end(call, open_at + 1)
    arg = call[open_at + 1:i]
    key, eq, _ = arg.partition("=")
    new = f"{key.strip()}={width}" if eq else str(width)
    lead = arg[:len(arg) - len(arg.lstrip())]
    return call[:open_at + 1] + lead + new + call[i:]
