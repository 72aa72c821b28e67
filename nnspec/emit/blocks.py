"""The classes of model.py: one per block, whatever the number of its uses, as torchvision writes
`BasicBlock(inplanes, planes, stride)`, and the model's class with the model's parameters.

Every module of the IR is one use of a block (or the model). The uses of a block become one class
(emit/generic.py): its arguments are the block's parameters and the input sizes it is built for,
and its parent constructs each use with that use's values. The model's class takes the model's
parameters with the spec's defaults: `variants` are the IR checked again with one parameter
changed, and a parameter is an argument that changes the network only when every variant fits
the class; every other parameter is fixed, and the class refuses another value with a
ValueError that names it, rather than build a network the spec would not.
"""
from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field

from nnspec.emit.generic import Generic, Unfit, Use, generalize
from nnspec.emit.statements import LINE
from nnspec.emit.verify import FORBIDDEN_NAMES
from nnspec.ir import ModuleDef, Seq
from nnspec.emit.verify import FORBIDDEN_ATTRS
from nnspec.ir.lower import MODULE_ATTRS
from nnspec.layers.base import py

# attribute names an argument kept for forward may not take (`self.train = train` would hide
# the method; the verifier refuses `self.save`)
TAKEN_ATTRS = set(MODULE_ATTRS) | FORBIDDEN_ATTRS

# names an argument may not have: they are Python's, or model.py's module-level names
BAD_ARGS = set(keyword.kwlist) | FORBIDDEN_NAMES | {
    "self", "torch", "nn", "F", "math", "OrderedDict", "super", "ValueError", "range", "len"}


@dataclass
class Klass:
    """A generated class: its name, text, and the call that builds each of its uses."""

    name: str
    text: str
    calls: dict[int, str] = field(default_factory=dict)   # id(module) -> constructor call


def signature_values(signature: str) -> dict[str, object]:
    """The literal values of a use's signature (`BasicBlock(planes=64, stride=1)`): numbers,
    `true`/`false`, strings and lists of those; a layer given as an argument is left out.
    The text is only parsed, never run."""
    try:
        call = ast.parse(signature, mode="eval").body
    except SyntaxError:
        return {}
    if not isinstance(call, ast.Call):
        return {}
    out = {}
    for kw in call.keywords:
        value = _literal(kw.value)
        if kw.arg is not None and value is not _NOT:
            out[kw.arg] = value
    return out


_NOT = object()


def _literal(node: ast.AST):
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return node.id == "true"
    if isinstance(node, ast.List):
        items = [_literal(e) for e in node.elts]
        return _NOT if any(i is _NOT for i in items) else tuple(items)
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _NOT
    return value if isinstance(value, (int, float, str)) else _NOT


def arg_name(name: str, taken: set[str]) -> str:
    """`name` as a constructor argument: a Python keyword or a module-level name gets a `_`."""
    name = re.sub(r"\W", "_", name)
    if not name.isidentifier() or name.startswith("__"):
        name = "p_" + name.lstrip("_")
    while name in BAD_ARGS or name in taken:
        name += "_"
    return name


def input_dims(module: ModuleDef, low, params: set[str]) -> dict[str, int]:
    """The input sizes a block's layers are built for, named as torchvision names them: the
    channels of an image (C, H, W), the features of a vector or a sequence (..., D)."""
    out: dict[str, int] = {}
    several = len(module.inputs) > 1
    for v in module.inputs:
        shape = v.type.shape
        if not shape or not all(isinstance(d, int) for d in shape):
            continue
        if len(shape) >= 3:
            label, dim = "channels", shape[0]
        else:
            label, dim = "features", shape[-1]
        base = f"{low.var(v)}_{label}" if several else f"in_{label}"
        name = arg_name(base, params | set(out))
        out[name] = dim
    return out


def child_modules(module: ModuleDef) -> list[ModuleDef]:
    stack, out = [c for _, c in module.children], []
    while stack:
        c = stack.pop(0)
        if isinstance(c, ModuleDef):
            out.append(c)
        elif isinstance(c, Seq):
            stack[:0] = c.items
    return out


def class_text(name: str, doc: list[str], generic: Generic, defaults: dict[str, object],
               guards: dict[str, object]) -> str:
    """The text of a class; `defaults` gives the model's arguments their spec values, `guards`
    the arguments fixed at one value."""
    args = [a if a not in defaults else f"{a}={py(defaults[a])}" for a in generic.args]
    head = f"    def __init__({', '.join(['self'] + args)}):"
    if len(head) > LINE:
        head = "    def __init__(\n" + "".join(f"        {a},\n" for a in ["self"] + args) + "    ):"
    lines = [f"class {name}(nn.Module):"] + doc + ["", head, "        super().__init__()"]
    for arg, value in guards.items():
        test = f"{arg} is not {value}" if isinstance(value, bool) else f"{arg} != {py(value)}"
        lines += [f"        if {test}:", "            raise ValueError("]
        pieces = fixed_message(arg, value)
        lines += [f"                {py(p)}" for p in pieces[:-1]] + [f"                {py(pieces[-1])})"]
    for arg, attr in generic.stored.items():
        lines.append(f"        self.{attr} = {arg}")
    # `pass` stands for a use without children; other statements, or a branch's, replace it
    body = [line for line in generic.init if line != "        pass"]
    if not body and not generic.stored and not guards:
        body = ["        pass"]
    lines += body
    lines += ["", f"    def forward({generic.forward_args}):"] + generic.forward
    return "\n".join(lines) + "\n"


def fixed_message(arg: str, value) -> list[str]:
    """Why a class refuses another value of `arg`, in pieces of a line each."""
    text = (f"{arg} is fixed at {py(value)} in this file: other values change the structure of "
            f"the network; generate the file again from the spec with {arg} set")
    pieces, piece = [], ""
    for word in text.split(" "):
        if piece and len(piece) + len(word) > 70:
            pieces.append(piece)
            piece = ""
        piece += word + " "
    return pieces + [piece.rstrip(" ")]


def generalize_or_split(uses: list[Use], params: list[str], dims: list[str],
                        taken: set[str]) -> list[tuple[list[int], Generic]]:
    """One class for the uses if they fit one, else one per group of uses that do (rare: a
    comment in model.py says so)."""
    taken = taken | TAKEN_ATTRS
    try:
        return [(list(range(len(uses))), generalize(uses, params, dims, taken))]
    except Unfit:
        pass
    groups: dict[tuple, list[int]] = {}
    from nnspec.emit.statements import key
    for i, u in enumerate(uses):
        shape = (tuple(key(s, loose=False) for s in u.init),
                 tuple(key(s, loose=False) for s in u.forward), u.forward_args)
        groups.setdefault(shape, []).append(i)
    out = []
    for members in groups.values():
        sub = [uses[i] for i in members]
        try:
            out.append((members, generalize(sub, params, dims, taken)))
        except Unfit:
            out += [([i], generalize([uses[i]], params, dims, taken)) for i in members]
    return out
