"""Verify generated source before it runs: the parsed `ast` may hold only what the emitters write.

A spec is data, and every spec text reaches generated source as a literal (`layers.base.py`'s
`py()`, `emit/text.py`). This check is the guard behind that rule: if an emitter bug ever let spec
text become code, `build()` refuses to run it instead of running it. It allows exactly

- a module docstring and the imports the header writes (math, torch, torch.nn as nn,
  torch.nn.functional as F, and collections' OrderedDict for the named items of a list), and
  `import M` for a module M that the layer registry accepted from a plugin kind's `imports`
  (layers/registry.py): the installed Python decides it, never the spec;
- runtime helper classes whose tree equals the helper's own source (nnspec/runtime);
- generated classes: `class Name(nn.Module)` (or `class Name(Helper)` for a runtime helper
  class of the file, whose `super().__init__(...)` may take arguments: an ensemble's class
  passes its members and combine rule to `Ensemble`) with a docstring and plain methods (`__init__`,
  `forward`; __init__'s arguments may have literal defaults, the model's parameters) made of
  assignments, `for` over a module list, `if`/`else` on an expression, `raise ValueError("...")`
  with a string literal, `return`, `super().__init__()` and
  `self.add_module("name", ...)` (a child whose name is not an identifier),
  over names, attributes, calls, numbers, string literals, tuples, lists, operators,
  subscripts and `a if b else c`;
- `Model = Name` and the pipeline's `LAYERS = [Name, ...]`.

No f-strings, lambdas, comprehensions, imports elsewhere, dunder names or attributes (other than
`super().__init__`), and none of the builtins that reach code, files or the interpreter.
"""
from __future__ import annotations

import ast
from functools import lru_cache

from nnspec.layers.base import REGISTRY

__all__ = ["GeneratedSourceError", "verify_source"]


class GeneratedSourceError(RuntimeError):
    """Generated source holds something the emitters never write: an nnspec bug, never run."""


IMPORTS = {("math", None), ("torch", None), ("torch.nn", "nn"), ("torch.nn.functional", "F")}
MODULE_NAMES = {"math", "torch", "nn", "F"}
FORBIDDEN_NAMES = {
    "__import__", "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "hasattr",
    "globals", "locals", "vars", "dir", "breakpoint", "input", "help", "exit", "quit", "type",
    "object", "memoryview", "classmethod", "staticmethod", "property", "print",
    "super",  # only in super().__init__(), which is matched whole
}
# methods that reach files or processes, on whatever object: the emitters call none of them
FORBIDDEN_ATTRS = {
    "system", "popen", "spawn", "fork", "exec", "eval", "open", "tofile", "save", "load",
    "write", "unlink", "remove", "rmdir", "rename", "mkdir", "chmod", "import_module",
}
# torch entry points that reach files, the network, native code or other processes; the
# emitters never call them
FORBIDDEN_MODULE_ATTRS = {
    "load", "save", "hub", "ops", "package", "library", "utils", "jit", "compile", "classes",
    "backends", "multiprocessing", "distributed", "serialization", "from_file", "onnx",
    "export", "cuda", "os", "sys", "importlib",
}
EXPRESSIONS = (
    ast.Name, ast.Load, ast.Store, ast.Attribute, ast.Call, ast.keyword, ast.Constant, ast.Tuple,
    ast.List, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice,
    ast.operator, ast.unaryop, ast.cmpop, ast.BoolOp, ast.boolop,
)
CONSTANT_TYPES = (int, float, str, bool, type(None))


def verify_source(source: str) -> None:
    """Raise GeneratedSourceError unless `source` holds only what the emitters generate."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise GeneratedSourceError(f"generated source does not parse: {err}") from None
    helpers: set[str] = set()  # the runtime helper classes defined so far
    for i, stmt in enumerate(tree.body):
        if i == 0 and _is_docstring(stmt):
            continue
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                allowed = (alias.name, alias.asname) in IMPORTS or (
                    alias.asname is None and alias.name in REGISTRY.plugin_imports())
                _require(allowed, stmt, f"import of {alias.name}")
        elif isinstance(stmt, ast.ImportFrom):  # `from collections import OrderedDict` only
            _require(stmt.module == "collections" and stmt.level == 0 and [
                (a.name, a.asname) for a in stmt.names] == [("OrderedDict", None)], stmt,
                f"an import from {stmt.module}")
        elif isinstance(stmt, ast.ClassDef):
            if _is_helper(stmt):
                helpers.add(stmt.name)
            else:
                _check_class(stmt, helpers)
        elif isinstance(stmt, ast.Assign):
            _check_binding(stmt)
        else:
            _refuse(stmt, f"a top-level {type(stmt).__name__}")


def _refuse(node: ast.AST, what: str):
    line = getattr(node, "lineno", "?")
    raise GeneratedSourceError(
        f"internal error: generated source holds {what} (line {line}), which nnspec never "
        "writes; it was not run. This is a bug in nnspec: please report it with the spec.")


def _require(ok: bool, node: ast.AST, what: str) -> None:
    if not ok:
        _refuse(node, what)


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


@lru_cache(maxsize=None)
def _helper_trees() -> dict[str, str]:
    """The dumped tree of every runtime helper class, by class name."""
    from nnspec.runtime import HELPERS, helper_source
    return {name: ast.dump(ast.parse(helper_source(name)).body[0]) for name in HELPERS}


def _is_helper(cls: ast.ClassDef) -> bool:
    return _helper_trees().get(cls.name) == ast.dump(cls)


def _check_binding(stmt: ast.Assign) -> None:
    """`Model = Root` or `LAYERS = [Layer0_..., ...]`."""
    _require(len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
             and stmt.targets[0].id in ("Model", "LAYERS"), stmt, "a top-level assignment")
    value = stmt.value
    names = value.elts if isinstance(value, ast.List) else [value]
    for name in names:
        _require(isinstance(name, ast.Name), stmt, "a top-level assignment of an expression")
        _check_name(name)


def _check_class(cls: ast.ClassDef, helpers: set[str]) -> None:
    base = cls.bases[0] if len(cls.bases) == 1 else None
    on_helper = isinstance(base, ast.Name) and base.id in helpers
    _require((on_helper or isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
              and base.value.id == "nn" and base.attr == "Module")
             and not cls.keywords and not cls.decorator_list, cls,
             f"class {cls.name} that is not a plain nn.Module")
    _check_identifier(cls.name, cls)
    for i, stmt in enumerate(cls.body):
        if i == 0 and _is_docstring(stmt):
            continue
        _require(isinstance(stmt, ast.FunctionDef) and stmt.name in ("__init__", "forward"), stmt,
                 f"a {type(stmt).__name__} in class {cls.name}")
        _check_method(stmt, on_helper)


def _check_method(fn: ast.FunctionDef, init_args: bool = False) -> None:
    a = fn.args
    _require(not (fn.decorator_list or fn.returns or a.posonlyargs or a.vararg or a.kwonlyargs
                  or a.kwarg or a.kw_defaults), fn, f"a method {fn.name} "
             "with decorators, annotations or special arguments")
    for default in a.defaults:  # the model's parameters, with the spec's values
        _require(_is_literal(default), default, "a default that is not a literal")
    for arg in a.args:
        _require(arg.annotation is None, arg, "an annotated argument")
        _check_identifier(arg.arg, arg)
    _check_block(fn.body, init_args)


def _check_block(body: list[ast.stmt], init_args: bool = False) -> None:
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                _check_expr(target)
            _check_expr(stmt.value)
        elif isinstance(stmt, ast.For):
            _require(not stmt.orelse and isinstance(stmt.target, ast.Name), stmt, "a for loop")
            _check_expr(stmt.target)
            _check_expr(stmt.iter)
            _check_block(stmt.body)
        elif isinstance(stmt, ast.If):
            _check_expr(stmt.test)
            _check_block(stmt.body)
            _check_block(stmt.orelse)
        elif isinstance(stmt, ast.Raise):
            _require(_is_value_error(stmt), stmt, "a raise of anything but ValueError(\"...\")")
        elif isinstance(stmt, ast.Return):
            if stmt.value is not None:
                _check_expr(stmt.value)
        elif isinstance(stmt, ast.Expr):
            _require(_is_super_init(stmt.value, init_args) or _is_add_module(stmt.value), stmt,
                     "an expression statement")
        elif not isinstance(stmt, ast.Pass):
            _refuse(stmt, f"a {type(stmt).__name__} statement")


def _is_literal(node: ast.expr) -> bool:
    """A number, string, bool or None, negated or not, or a tuple of those."""
    if isinstance(node, ast.Tuple):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, CONSTANT_TYPES)


def _is_value_error(stmt: ast.Raise) -> bool:
    """`raise ValueError("...")`: a class refusing an argument it was not generated for."""
    exc = stmt.exc
    return (stmt.cause is None and isinstance(exc, ast.Call) and isinstance(exc.func, ast.Name)
            and exc.func.id == "ValueError" and not exc.keywords and len(exc.args) == 1
            and isinstance(exc.args[0], ast.Constant) and isinstance(exc.args[0].value, str))


def _is_super_init(call: ast.expr, with_args: bool = False) -> bool:
    """`super().__init__()`: the one call statement (and dunder) the emitters write; with
    arguments (checked as expressions) only in a class derived from a runtime helper."""
    if not (isinstance(call, ast.Call) and (with_args or not call.args and not call.keywords)
            and isinstance(call.func, ast.Attribute) and call.func.attr == "__init__"
            and isinstance(call.func.value, ast.Call)
            and isinstance(call.func.value.func, ast.Name) and call.func.value.func.id == "super"
            and not call.func.value.args and not call.func.value.keywords):
        return False
    for arg in [*call.args, *call.keywords]:
        _check_expr(arg)
    return True


def _is_add_module(call: ast.expr) -> bool:
    """`self.add_module("block1-0", expr)`: a child whose name is not an identifier."""
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "add_module" and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "self" and len(call.args) == 2 and not call.keywords
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
        return False
    _check_expr(call.args[1])
    return True


def _check_expr(expr: ast.expr) -> None:
    for node in ast.walk(expr):
        _require(isinstance(node, EXPRESSIONS), node, f"a {type(node).__name__}")
        if isinstance(node, ast.Constant):
            _require(isinstance(node.value, CONSTANT_TYPES), node, "a constant of type "
                     f"{type(node.value).__name__}")
        elif isinstance(node, ast.Name):
            _check_name(node)
        elif isinstance(node, ast.Attribute):
            _check_attribute(node)
        elif isinstance(node, ast.keyword):
            _require(node.arg is not None, node, "a ** argument")
            _check_identifier(node.arg, node)


def _check_name(node: ast.Name) -> None:
    _require(node.id not in FORBIDDEN_NAMES, node, f"the name {node.id}")
    _check_identifier(node.id, node)


def _check_identifier(name: str, node: ast.AST) -> None:
    _require(name.isidentifier() and not name.startswith("__"), node, f"the name {name!r}")


def _check_attribute(node: ast.Attribute) -> None:
    if node.attr == "__init__":
        _refuse(node, "a __init__ attribute outside super().__init__()")
    _require(not node.attr.startswith("__") and node.attr not in FORBIDDEN_ATTRS, node,
             f"the attribute {node.attr}")
    if isinstance(node.value, ast.Name) and node.value.id in MODULE_NAMES:
        _require(not node.attr.startswith("_") and node.attr not in FORBIDDEN_MODULE_ATTRS, node,
                 f"{node.value.id}.{node.attr}")
