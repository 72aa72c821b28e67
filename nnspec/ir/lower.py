"""Lower: settle the names the emitters print. Unnamed children get attribute names, tensor values
get Python variable names (reusing a name once its value is dead, as hand-written code does), and
module definitions get class names (identical instantiations share one class)."""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from nnspec.ir import Child, Leaf, ModuleDef, Seq, Value
from nnspec.emit.verify import FORBIDDEN_NAMES
from nnspec.layers.base import REGISTRY

# names a tensor may not have in model.py: Python's keywords, the module-level names, and the
# builtins emit/verify.py refuses to see (a block's `in input`, as torchvision names its
# tensors, becomes `input_`)
RESERVED = set(keyword.kwlist) | FORBIDDEN_NAMES | {
    "self", "torch", "nn", "F", "math", "super", "print", "len", "range", "forward", "training", "m",
    "l", "O", "I"}  # the last three: PEP 8's ambiguous names (a linter's E741), `l` -> `l_`
# the attributes of torch's nn.Module, nn.Sequential and nn.ModuleList (tests/test_lower.py keeps
# this in step with the installed torch): a child of one of these names would be hidden by the
# method (`train: linear(4)` made forward call Module.train), or refused by add_module
MODULE_ATTRS = frozenset({
    "T_destination", "add_module", "append", "apply", "bfloat16", "buffers", "call_super_init",
    "children", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extend", "extra_repr",
    "float", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half",
    "insert", "ipu", "load_state_dict", "modules", "mtia", "named_buffers", "named_children",
    "named_modules", "named_parameters", "parameters", "pop", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module",
    "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to",
    "to_empty", "train", "training", "type", "xpu", "zero_grad"})


@dataclass
class Lowered:
    """The IR plus the names the emitters use."""

    root: ModuleDef
    var_names: dict[int, str] = field(default_factory=dict)      # id(Value) -> variable
    modules: list[ModuleDef] = field(default_factory=list)        # every definition, children first

    def var(self, v: Value) -> str:
        return self.var_names[id(v)]


def lower(root: ModuleDef) -> Lowered:
    out = Lowered(root)
    seen: set[int] = set()
    _walk(root, out, seen)
    return out


def name_children(root: ModuleDef) -> None:
    """Give every unnamed child its attribute name, in every module of the tree. check() calls
    this as soon as the IR is built, so that the passes that run before lower() (pipeline
    placement, activation checkpointing, compress directives) see the same names."""
    stack: list[Child] = [root]
    while stack:
        child = stack.pop()
        if isinstance(child, Seq):
            stack.extend(child.items)
        elif isinstance(child, ModuleDef):
            _name_children(child)
            stack.extend(c for _, c in child.children)


def _walk(child: Child, out: Lowered, seen: set[int]) -> None:
    if id(child) in seen:
        return
    seen.add(id(child))
    if isinstance(child, Seq):
        for item in child.items:
            _walk(item, out, seen)
        return
    if isinstance(child, Leaf):
        return
    for _, c in child.children:
        _walk(c, out, seen)
    _name_children(child)
    _name_values(child, out)
    out.modules.append(child)


def _name_children(module: ModuleDef) -> None:
    taken = {n for n, _ in module.children if n is not None}
    named = []
    for name, child in module.children:
        if name is None:
            base = _snake(child.kind if isinstance(child, Leaf) else
                          "seq" if isinstance(child, Seq) else child.name)
            if base in MODULE_ATTRS or base in RESERVED:
                base += "_"
            name, i = base, 1
            while name in taken:
                i += 1
                name = f"{base}{i}"
            taken.add(name)
        named.append((name, child))
    module.children = named
    module.__dict__.pop("_names", None)  # child_name() recomputes its index


def _name_values(module: ModuleDef, out: Lowered) -> None:
    last_use: dict[int, int] = {}
    for i, op in enumerate(module.ops):
        for v in list(op.args) + list(op.kwargs.values()):
            last_use[id(v)] = i
    end = len(module.ops)
    for v in module.outputs:
        last_use[id(v)] = end
    holder: dict[str, Value] = {}

    def alive(v: Value, at: int) -> bool:
        return last_use.get(id(v), -1) > at

    def take(v: Value, at: int, busy: set[str] = frozenset()) -> None:
        if id(v) in out.var_names:
            return
        base = _ident(v.hint)
        name, i = base, 1
        while name in busy or (name in holder and holder[name] is not v
                               and alive(holder[name], at)):
            i += 1
            name = f"{base}_{i}"
        holder[name] = v
        out.var_names[id(v)] = name
        if isinstance(busy, set):
            busy.add(name)

    inputs: set[str] = set()
    for v in module.inputs:
        take(v, -1, inputs)
    for i, op in enumerate(module.ops):
        outs: set[str] = set()
        for v in op.outs:
            take(v, i, outs)
    for v in module.outputs:  # an output that is an input passed straight through
        take(v, end)


def _ident(hint: str) -> str:
    name = re.sub(r"\W", "_", hint) or "x"
    if name[0].isdigit() or name.startswith("__"):   # emit/verify.py refuses dunder names
        name = "x" + name
    # a plugin module that model.py imports is a module-level name too (emit/source.py)
    plugin_roots = {m.split(".")[0] for m in REGISTRY.plugin_imports()}
    return name + "_" if name in RESERVED or name in plugin_roots else name


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def class_name(name: str) -> str:
    """A block or model name as a PEP 8 class name (CapWords): `resnet18` -> `Resnet18`,
    `char_lstm` -> `CharLstm`; `GPT2Model` and `DenseLayer` stay as they are."""
    parts = [p for p in re.split(r"[\W_]+", name) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Block"
    return name if name[0].isalpha() else "Block" + name
