"""The compile-time checks on the `compress` section's directives (their data is in checked.py).

`compress { prune = magnitude(0.9, on=[linear]) ... }` is validated in two steps: the section's
Pydantic model (config.CompressSpec) checks the keys and value shapes; `read_directives` then
checks each call against its argument table and against the model's layers: a name pattern that
matches no layer, a quantization the CPU backend cannot run, pruning a weight tied elsewhere.
Each problem is a located diagnostic under the argument that causes it. Torch-free.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from nnspec.lang import syntax as S
from nnspec.lang.config import Call, CompressSpec
from nnspec.lang.diagnostics import Reporter, Span, did_you_mean
from nnspec.ir import ModuleDef
from nnspec.compress.attention import check_heads, check_written_once
from nnspec.compress.checked import (
    Distill, LayerInfo, Located, Plan, Prune, Quantize, Target, matches_pattern, model_layers
)

# ---- directives --------------------------------------------------------------------------------

PRUNE_METHODS = ("magnitude", "random", "channels", "filters", "heads", "nm")
QUANT_METHODS = ("dynamic", "static", "qat", "weight_only", "cast")
SCOPES = ("layer", "global")
TRANSFER = ("labelled", "unlabelled")   # the inputs the teacher's soft targets cover
# the layer kinds each quantization can run on the CPU (fbgemm/x86 kernels)
DYNAMIC_KINDS = ("linear", "lstm", "gru")
STATIC_KINDS = ("linear", "conv1d", "conv2d", "conv3d", "separable_conv2d")
WEIGHT_ONLY_KINDS = ("linear", "embedding")
CHANNEL_KINDS = ("conv1d", "conv2d", "conv3d", "linear")
NM_KINDS = ("linear", "conv1d", "conv2d", "conv3d")


# ---- argument tables ---------------------------------------------------------------------------

def _fraction(v):
    return _num(v) and 0 < v < 1


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _names(v):
    return isinstance(v, tuple) and all(isinstance(x, str) for x in v) or isinstance(v, str)


# name -> (positional names, {arg: (default, test, what it must be)})
Rule = tuple[Any, Callable[[Any], bool], str]
def _nn_path(v):
    """A teacher is a spec: only a .nn path is read (never a file whose lines a diagnostic could
    quote), and a NUL could not name a file."""
    return isinstance(v, str) and v.endswith(".nn") and "\x00" not in v


_TARGET: dict[str, Rule] = {
    "on": (None, _names, "a list of layer kinds or name patterns, e.g. [linear, \"layer*.conv1\"]"),
    "skip": ((), _names, "a list of layer kinds or name patterns"),
}
ARGS: dict[str, tuple[tuple[str, ...], dict[str, Rule]]] = {
    "magnitude": (("amount",), {"amount": (None, _fraction, "a fraction between 0 and 1"),
                                "scope": ("layer", lambda v: v in SCOPES, "layer or global"),
                                "schedule": ("oneshot", lambda v: True, "oneshot or cubic(start=, "
                                             "end=, every=)"), **_TARGET}),
    "random": (("amount",), {"amount": (None, _fraction, "a fraction between 0 and 1"),
                             "scope": ("layer", lambda v: v in SCOPES, "layer or global"),
                             "schedule": ("oneshot", lambda v: True, "oneshot or cubic(...)"),
                             **_TARGET}),
    "channels": (("amount",), {"amount": (None, _fraction, "a fraction between 0 and 1"),
                               "norm": (2, lambda v: _num(v) and v > 0, "a number > 0 (1 or 2)"),
                               **_TARGET}),
    "nm": (("n", "m"), {"n": (2, _pos_int, "a positive integer"),
                        "m": (4, _pos_int, "a positive integer"), **_TARGET}),
    "dynamic": (("dtype",), {"dtype": ("int8", lambda v: v == "int8", "int8"), **_TARGET}),
    "static": (("dtype",), {"dtype": ("int8", lambda v: v == "int8", "int8"),
                            "calibrate": (8, _pos_int, "a number of training batches"),
                            "backend": ("x86", lambda v: v in ("x86", "fbgemm", "qnnpack"),
                                        "x86, fbgemm or qnnpack"), **_TARGET}),
    "qat": (("dtype",), {"dtype": ("int8", lambda v: v == "int8", "int8"),
                         "backend": ("x86", lambda v: v in ("x86", "fbgemm", "qnnpack"),
                                     "x86, fbgemm or qnnpack"), **_TARGET}),
    "weight_only": (("dtype",), {"dtype": ("int8", lambda v: v in ("int8", "int4"), "int8 or int4"),
                                 "group_size": (32, _pos_int, "a positive integer"), **_TARGET}),
    "cast": (("dtype",), {"dtype": (None, lambda v: v in ("fp16", "bf16"), "fp16 or bf16"),
                          **_TARGET}),
    "teacher": (("spec",), {"spec": (None, _nn_path, "a .nn file"),
                            "weights": (None, lambda v: isinstance(v, str), "a weights file"),
                            "temperature": (4.0, lambda v: _num(v) and v > 0, "a number > 0"),
                            "alpha": (0.9, lambda v: _num(v) and 0 <= v <= 1,
                                      "a number from 0 to 1"),
                            "features": ((), lambda v: isinstance(v, tuple) and all(
                                isinstance(p, tuple) and len(p) == 2
                                and all(isinstance(s, str) for s in p) for p in v),
                                "a list of [student_layer, teacher_layer] pairs"),
                            "feature_weight": (1.0, lambda v: _num(v) and v >= 0, "a number >= 0"),
                            "seeds": (1, _pos_int, "a positive integer"),
                            "mixup": (0.0, lambda v: _num(v) and v >= 0, "a number >= 0 (the "
                                      "Beta(a, a) of mixup pairs the teacher labels; 0: none)"),
                            "epochs": (None, _pos_int, "a positive integer"),
                            "labels": (1.0, lambda v: _num(v) and 0 < v <= 1, "the fraction of "
                                       "the training labels the student sees, above 0 and at "
                                       "most 1 (e.g. 0.1)"),
                            "transfer": ("labelled", lambda v: v in TRANSFER, "labelled (the "
                                         "teacher labels the labelled inputs) or unlabelled "
                                         "(also the training inputs whose labels are unused)")}),
}
ARGS["filters"] = ARGS["channels"]
ARGS["heads"] = (("amount",), {**ARGS["channels"][1], "on": (
    None, _names, "a list of attention name patterns, e.g. [\"transformer.h.*.attn\"]")})




def _args(call: Call, key: str, index: int, loc: Located, reporter: Reporter) -> dict | None:
    """The call's arguments by name, defaults filled in; None after reporting a problem."""
    if call.name not in ARGS or (key == "distill") != (call.name == "teacher"):
        allowed = {"prune": PRUNE_METHODS, "quantize": QUANT_METHODS, "distill": ("teacher",)}[key]
        reporter.error("E0720", f"unknown {key} method `{call.name}`", loc.span(key, index),
                       did_you_mean(call.name, allowed) or f"use one of: {', '.join(allowed)}")
        return None
    positional, table = ARGS[call.name]
    if len(call.args) > len(positional):
        reporter.error("E0721", f"`{call.name}` takes {len(positional)} positional argument"
                       f"{'s' if len(positional) != 1 else ''}, got {len(call.args)}",
                       loc.span(key, index), f"name the others, e.g. {', '.join(table)}")
        return None
    values = dict(zip(positional, call.args))
    ok = True
    for name, value in call.kwargs.items():
        if name not in table:
            reporter.error("E0721", f"`{call.name}` has no argument `{name}`",
                           loc.span(key, index, name),
                           did_you_mean(name, table) or f"its arguments: {', '.join(table)}")
            ok = False
        elif name in values:
            reporter.error("E0721", f"`{call.name}` argument `{name}` given twice",
                           loc.span(key, index, name), None)
            ok = False
        else:
            values[name] = value
    for i, (name, (default, test, what)) in enumerate(table.items()):
        if name not in values:
            if default is None and name not in ("on", "epochs"):
                reporter.error("E0721", f"`{call.name}` needs `{name}`", loc.span(key, index),
                               f"`{name}`: {what}")
                ok = False
            values.setdefault(name, default)
            continue
        if not test(values[name]):
            pos = positional.index(name) if name in positional else None
            reporter.error("E0722", f"invalid `{call.name}` argument `{name}`: got "
                           f"{values[name]!r}", loc.span(key, index, name, pos),
                           f"`{name}`: {what}")
            ok = False
    if isinstance(values.get("on"), str):
        values["on"] = (values["on"],)
    if isinstance(values.get("skip"), str):
        values["skip"] = (values["skip"],)
    return values if ok else None


def _schedule(value: Any, loc: Located, index: int, reporter: Reporter) -> tuple | None:
    if value in ("oneshot", Call(name="oneshot")):
        return ("oneshot",)
    if isinstance(value, Call) and value.name == "cubic" and not value.args:
        extra = set(value.kwargs) - {"start", "end", "every"}
        start, end = value.kwargs.get("start", 0), value.kwargs.get("end")
        every = value.kwargs.get("every", 1)
        if not extra and all(isinstance(v, int) and not isinstance(v, bool) for v in
                             (start, end, every)) and 0 <= start < end and every > 0:
            return ("cubic", start, end, every)
    reporter.error("E0722", "invalid pruning schedule", loc.span("prune", index, "schedule"),
                   "oneshot, or cubic(start=0, end=300, every=10): fine-tuning steps over which "
                   "the sparsity rises from 0 to the amount (Zhu & Gupta 2017)")
    return None


# ---- the check ---------------------------------------------------------------------------------

def read_directives(settings: CompressSpec, ir: ModuleDef, section: S.Section | None,
                    section_span: Span | None, reporter: Reporter,
                    spec_dir: Path | None = None) -> Plan:
    """Check the compress section against the model; problems go to `reporter`."""
    loc = Located(section, section_span)
    layers = model_layers(ir)
    prunes, quants, distill, heads = [], [], None, []
    for i, call in enumerate(settings.prune):
        values = _args(call, "prune", i, loc, reporter)
        if values is not None:
            if call.name == "heads":
                p = check_heads(values, ir, loc, i, reporter)
                heads += [(i, p)] if p is not None else []
            else:
                p = _prune(call.name, values, layers, loc, i, reporter)
            if p is not None:
                prunes.append(p)
    if heads:
        check_written_once(ir, heads, loc, reporter)
    for i, call in enumerate(settings.quantize):
        values = _args(call, "quantize", i, loc, reporter)
        if values is not None:
            q = _quantize(call.name, values, layers, loc, i, reporter)
            if q is not None:
                quants.append(q)
    if len([q for q in quants if q.method in ("static", "qat", "dynamic")]) > 1:
        reporter.error("E0724", "more than one int8 quantization of the activations",
                       loc.span("quantize", 1), "keep one of dynamic, static and qat")
    if settings.distill is not None:
        values = _args(settings.distill, "distill", 0, loc, reporter)
        if values is not None:
            base = spec_dir or Path(".")
            distill = Distill(base / values["spec"], base / values["weights"],
                              float(values["temperature"]), float(values["alpha"]),
                              tuple(tuple(p) for p in values["features"]),
                              float(values["feature_weight"]), values["seeds"], values["epochs"],
                              float(values["mixup"]), float(values["labels"]),
                              values["transfer"])
            if distill.transfer == "unlabelled" and distill.labels == 1:
                reporter.error("E0722", "`transfer = unlabelled` needs `labels` below 1: with "
                               "every training label used no input is left unlabelled",
                               loc.span("distill", 0, "transfer"),
                               "e.g. labels=0.1: the student sees 10% of the labels and the "
                               "teacher labels the other 90% of the inputs")
            for student, _teacher in distill.features:
                if not any(layer.name == student for layer in layers):
                    reporter.error("E0723", f"feature layer `{student}` is not a layer of the "
                                   "student", loc.span("distill", 0, "features"),
                                   did_you_mean(student, [la.name for la in layers]))
    if len(set(settings.order)) != len(settings.order):
        reporter.error("E0722", "`compress.order` names a step twice", loc.fallback,
                       "name each of distill, prune, quantize at most once")
    return Plan(tuple(prunes), tuple(quants), distill, settings)


def _check_patterns(target: Target, layers: list[LayerInfo], kinds: tuple[str, ...], what: str,
                    key: str, index: int, loc: Located, reporter: Reporter,
                    explicit: bool = True) -> bool:
    ok = True
    given = target.on if explicit else ()
    for arg, patterns in (("on", given), ("skip", target.skip)):
        for p in patterns:
            hits = [layer for layer in layers if matches_pattern(p, layer)]
            if not hits:
                hint = did_you_mean(p, {la.kind for la in layers} | {la.name for la in layers})
                reporter.error("E0723", f"`{p}` matches no layer of the model",
                               loc.span(key, index, arg, item=p),
                               hint or "use a layer kind (linear, conv2d) or a name pattern such "
                               "as \"layer*.conv1\" (nnspec summary lists the names)")
                ok = False
            elif arg == "on" and not any(layer.kind in kinds for layer in hits):
                got = sorted({layer.kind for layer in hits})
                which = f"{p} layers" if got == [p] else \
                    f"`{p}` (it matches only {', '.join(got)} layers)"
                reporter.error("E0724", f"{what} cannot run on {which}",
                               loc.span(key, index, arg, item=p),
                               f"{what} applies to {', '.join(kinds)}")
                ok = False
    return ok


def _prune(method: str, v: dict, layers, loc: Located, i: int, reporter: Reporter):
    method = "channels" if method == "filters" else method
    kinds = {"channels": CHANNEL_KINDS, "nm": NM_KINDS}.get(
        method, tuple(sorted({la.kind for la in layers if _prunable(la)})))
    target = Target(v["on"] or kinds, v["skip"])
    if not _check_patterns(target, layers, kinds, f"{method} pruning", "prune", i, loc, reporter,
                           bool(v["on"])):
        return None
    chosen = target.select(layers, kinds)
    for layer in chosen:
        if layer.tied:
            reporter.error("E0725", f"cannot prune `{layer.name}`: its weight is tied to another "
                           "layer's", loc.span("prune", i, "on"),
                           f"add \"{layer.name}\" to skip=[...], or remove the tie")
            return None
    if method == "nm":
        n, m = v["n"], v["m"]
        if n >= m:
            reporter.error("E0722", f"nm({n}, {m}) keeps {n} of every {m} weights: n must be less "
                           "than m", loc.span("prune", i), "e.g. nm(2, 4)")
            return None
        bad = [la.name for la in chosen if _in_features(la) % m]
        if bad:
            reporter.error("E0724", f"{n}:{m} pruning needs input sizes divisible by {m}: "
                           f"{', '.join(bad)}", loc.span("prune", i),
                           f"add them to skip=[...]")
            return None
        return Prune("nm", 1 - n / m, target, n=n, m=m, layers=tuple(la.name for la in chosen))
    schedule = ("oneshot",)
    if "schedule" in v:
        schedule = _schedule(v["schedule"], loc, i, reporter)
        if schedule is None:
            return None
    return Prune(method, float(v["amount"]), target, v.get("scope", "layer"), schedule,
                 float(v.get("norm", 2)), layers=tuple(la.name for la in chosen))


def _prunable(layer: LayerInfo) -> bool:
    return any(k.startswith("weight") and len(s) >= 2 for k, s in layer.params.items())


def _in_features(layer: LayerInfo) -> int:
    shape = layer.params.get("weight", (0, 0))
    n = 1
    for d in shape[1:]:
        n *= d
    return n


def _quantize(method: str, v: dict, layers, loc: Located, i: int, reporter: Reporter):
    kinds = {"dynamic": DYNAMIC_KINDS, "static": STATIC_KINDS, "qat": STATIC_KINDS,
             "weight_only": WEIGHT_ONLY_KINDS}.get(method)
    if method == "cast":
        kinds = tuple(sorted({la.kind for la in layers}))
    target = Target(v["on"] or kinds, v["skip"])
    what = {"dynamic": "dynamic int8 quantization", "static": "static int8 quantization",
            "qat": "quantization-aware training", "weight_only": f"weight-only {v['dtype']}",
            "cast": f"casting to {v['dtype']}"}[method]
    if not _check_patterns(target, layers, kinds, what, "quantize", i, loc, reporter,
                           bool(v["on"])):
        return None
    chosen = target.select(layers, kinds)
    if method == "weight_only" and v["dtype"] == "int4":
        bad = [la.name for la in chosen if la.kind == "linear" and _in_features(la) % 2]
        if bad:
            reporter.error("E0724", f"int4 packs two weights per byte: the input sizes of "
                           f"{', '.join(bad)} must be even", loc.span("quantize", i),
                           "add them to skip=[...], or use int8")
            return None
    return Quantize(method, v["dtype"], target, v.get("calibrate", 8), v.get("group_size", 32),
                    v.get("backend", "x86"), tuple(la.name for la in chosen))
