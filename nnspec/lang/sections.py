"""Sections: evaluate a spec's `train`, `parallel`, `compress` and `weights` sections into settings.

Values are data: numbers, strings, lists, bare words (`bf16`, `digits`) and calls with arguments
(`adamw(lr=3e-4)`), which become `config.Call`s. Constants of the file may be used. Command-line
overrides (`--set parallel.zero=3`, `--set train.optimizer.lr=0.01`) are applied before
validation, so they are checked exactly like the spec. Every error is located at its setting.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from nnspec.lang import syntax as S
from nnspec.lang.config import (SECTIONS, Call, CompressSpec, EnsembleSpec, ParallelSpec,
                                 TrainSpec, WeightsSpec)
from nnspec.lang.diagnostics import Reporter, Span, did_you_mean

MAX_VALUE = 2 ** 62


@dataclass
class Settings:
    """The validated sections of a spec, and where each setting was written."""

    train: TrainSpec = field(default_factory=TrainSpec)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    compress: CompressSpec = field(default_factory=CompressSpec)
    weights: WeightsSpec = field(default_factory=WeightsSpec)
    ensemble: EnsembleSpec = field(default_factory=EnsembleSpec)
    spans: dict[str, Span] = field(default_factory=dict)   # "parallel.zero" -> span of the setting
    section_spans: dict[str, Span] = field(default_factory=dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)  # as written, before defaults
    invalid: set[str] = field(default_factory=set)  # sections with errors: they hold defaults

    def span_of(self, section: str, key: str) -> Span | None:
        return self.spans.get(f"{section}.{key}") or self.section_spans.get(section)


class _Bad(Exception):
    def __init__(self, message: str, span: Span, help: str | None = None):
        self.message, self.span, self.help = message, span, help


def evaluate_sections(sections: dict[str, S.Section], consts: dict[str, Any],
                      overrides: dict[str, Any], reporter: Reporter) -> Settings:
    """Validate every section (missing ones take their defaults); errors go to `reporter`."""
    settings = Settings()
    for path in overrides:
        head = path.partition(".")[0]
        if head not in SECTIONS:
            reporter.error("E0704", f"--set {path}: no section `{head}`", None,
                           did_you_mean(head, SECTIONS) or f"sections are: {', '.join(SECTIONS)}")
    for name, cls in SECTIONS.items():
        section = sections.get(name)
        raw: dict[str, Any] = {}
        errors_before = len(reporter.diagnostics) + reporter.dropped
        if section is not None:
            settings.section_spans[name] = section.span
            for s in section.settings:
                if s.key in raw:
                    reporter.error("E0204", f"`{name}.{s.key}` is set twice", s.key_span,
                                   "keep one of them")
                    continue
                try:
                    raw[s.key] = _value(s.value, consts)
                except _Bad as bad:
                    reporter.error("E0701", bad.message, bad.span, bad.help)
                    continue
                settings.spans[f"{name}.{s.key}"] = s.span
        for path, value in overrides.items():
            head, _, rest = path.partition(".")
            if head == name:
                _override(raw, rest, value)
        settings.written[name] = dict(raw)
        model = _validate(cls, name, raw, settings, section, reporter)
        if model is not None:
            setattr(settings, name, model)
        if model is None or len(reporter.diagnostics) + reporter.dropped > errors_before:
            settings.invalid.add(name)
    return settings


def _override(raw: dict[str, Any], path: str, value: Any) -> None:
    key, _, sub = path.partition(".")
    if not sub:
        raw[key] = value
        return
    current = raw.get(key)
    call = current if isinstance(current, Call) else Call(name=str(current)) if current else None
    if call is None:
        raw[key] = {sub: value}  # reported as a bad value by validation
        return
    raw[key] = Call(name=call.name, args=call.args, kwargs={**call.kwargs, sub: value})


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set a=1 --set train.data=npz("d.npz") --set parallel.stage_boundaries=[layer3]` ->
    {"a": 1, "train.data": Call(npz, ...), ...}: values are written as in a spec (numbers,
    true/false, strings, words, lists, calls).

    Raises:
        ValueError: an item is not NAME=VALUE or its value cannot be read; the message is the
            command line's usage error.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not all(part.isidentifier() for part in key.split(".")):
            raise ValueError(f"--set expects NAME=VALUE, got `{item}`")
        try:
            out[key] = override_value(raw.strip())
        except ValueError as err:
            raise ValueError(f"--set {key}: cannot read `{raw.strip()}`: {err}") from None
    return out


def override_value(text: str) -> Any:
    """The value of a command-line override (`--set train.data=npz("d.npz")`), read with the
    spec's own syntax: numbers, strings, words, lists and calls.

    Raises:
        ValueError: the text is not a setting value (the message says why).
    """
    from nnspec.lang.diagnostics import SpecError
    from nnspec.lang.parse import parse

    try:
        file = parse(f"train {{\n  value = {text}\n}}\n", "--set")
    except SpecError as err:
        raise ValueError(err.diagnostics[0].message) from None
    sections = [i for i in file.items if isinstance(i, S.Section)]
    if len(sections) != 1 or len(sections[0].settings) != 1:
        raise ValueError("expected one value")
    try:
        return _value(sections[0].settings[0].value, {})
    except _Bad as bad:
        raise ValueError(bad.message) from None


def _value(node: S.Node, consts: dict[str, Any]) -> Any:
    if isinstance(node, S.Literal):
        return node.value
    if isinstance(node, S.Name):
        return consts.get(node.id, node.id)  # a bare word is a symbol: bf16, digits, auto
    if isinstance(node, S.ListExpr):
        return tuple(_value(i, consts) for i in node.items)
    if isinstance(node, S.Unary) and node.op == "-":
        v = _value(node.operand, consts)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(node, S.Call) and isinstance(node.func, S.Name):
        args, kwargs = [], {}
        for a in node.args:
            if a.name is None:
                if kwargs:
                    raise _Bad("positional argument after a named one", a.span)
                args.append(_value(a.value, consts))
            elif a.name in kwargs:
                raise _Bad(f"argument `{a.name}` given twice", a.span)
            else:
                kwargs[a.name] = _value(a.value, consts)
        return Call(name=node.func.id, args=tuple(args), kwargs=kwargs)
    if isinstance(node, S.BinOp) and node.op in ("+", "-", "*", "/", "//"):
        a, b = _value(node.left, consts), _value(node.right, consts)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if numbers and not (node.op in ("/", "//") and b == 0):
            value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                     "/": lambda: a / b, "//": lambda: a // b}[node.op]()
            if abs(value) <= MAX_VALUE:
                return value
    raise _Bad("a setting is a number, string, list, word or call such as adamw(lr=1e-3)",
               node.span)


def _validate(cls, section_name: str, raw: dict[str, Any], settings: Settings,
              section: S.Section | None, reporter: Reporter):
    fields = cls.model_fields
    data: dict[str, Any] = {}
    for key, value in raw.items():
        where = settings.span_of(section_name, key)
        if key not in fields:
            reporter.error("E0702", f"`{section_name}` has no setting `{key}`",
                           _key_span(section, key) or where,
                           did_you_mean(key, fields) or f"its settings: {', '.join(fields)}")
            continue
        data[key] = _coerce(fields[key].annotation, value)
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        seen = set()
        for e in err.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            if key in seen:
                continue  # one message per setting: union members repeat themselves
            seen.add(key)
            desc = fields[key].description if key in fields else None
            reporter.error("E0703", f"invalid `{section_name}.{key}`: {_lower(e['msg'])}, got "
                           f"{_show(raw.get(key))}", settings.span_of(section_name, key),
                           f"`{key}`: {desc}" if desc else None)
        return None


def _key_span(section: S.Section | None, key: str) -> Span | None:
    if section is None:
        return None
    for s in section.settings:
        if s.key == key:
            return s.key_span
    return None


def _coerce(annotation, value: Any) -> Any:
    """Bare words stand for calls without arguments; lists become tuples."""
    wants_call = Call in _members(annotation)
    if isinstance(value, tuple):
        inner = typing.get_args(annotation)
        return tuple(_coerce(inner[0] if inner else Any, v) for v in value)
    if wants_call and isinstance(value, str) and str not in _members(annotation):
        return Call(name=value)
    if value == "none" and type(None) in _members(annotation):
        return None
    return value


def _members(annotation) -> set:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    out = set()
    for a in args:
        out |= _members(a) if typing.get_args(a) else {a}
    return out


def _lower(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, Call):
        inner = [_show(a) for a in v.args] + [f"{k}={_show(x)}" for k, x in v.kwargs.items()]
        return f"{v.name}({', '.join(inner)})" if inner else v.name
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return repr(v)
