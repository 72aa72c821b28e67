"""Compile-time checks of the `weights` section: what can be known before any checkpoint is read.

A rename is a regular expression: one that does not compile would fail at load time, after the
model was built, so it is reported here. A transpose pattern names model keys: one that matches
no weight of the model would silently transpose nothing. `hf_config` words that name model
parameters take the parameters' values (`hf_values`).
"""
from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Any

from nnspec.lang.config.models import WeightsSpec
from nnspec.lang.diagnostics import Reporter


def check_weights(weights: WeightsSpec, keys: list[str] | None, span_of, reporter: Reporter) -> None:
    """Report (E0740) renames that do not compile and transpose patterns that match no key.

    Args:
        weights: the validated section.
        keys: the model's weight names (`module.weight`, `module.bias`), or None when the model
            has errors (then patterns are not matched).
        span_of: `Settings.span_of` bound to the section: setting name -> span.
    """
    for setting in ("rename", "export_rename"):
        for pattern, _ in getattr(weights, setting):
            problem = regex_problem(pattern)
            if problem:
                reporter.error("E0740", f"weights.{setting}: `{pattern}` is not a regular "
                               f"expression: {problem}", span_of(setting),
                               "write Python `re` syntax; a backslash in a spec string is "
                               "written `\\\\`")
    if keys is None:
        return
    for pattern in weights.transpose:
        if not any(fnmatchcase(k, pattern) for k in keys):
            reporter.error("E0740", f"weights.transpose: `{pattern}` matches no weight of the "
                           "model", span_of("transpose"),
                           "patterns name model keys after renaming, e.g. "
                           "`transformer.h.*.attn.c_attn.weight`")


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` does not compile, or None."""
    try:
        re.compile(pattern)
    except re.error as err:
        return str(err)
    return None


def model_params(signature: str) -> dict[str, Any]:
    """The model's parameter values, read back from its IR signature
    (`gpt2_small(vocab_size=100, n_embd=16)` -> {"vocab_size": 100, "n_embd": 16})."""
    from nnspec.lang.sections import override_value  # sections imports this package

    if "(" not in signature:
        return {}
    try:
        call = override_value(signature)
    except ValueError:
        return {}
    return dict(getattr(call, "kwargs", {}))


def hf_values(weights: WeightsSpec, params: dict[str, Any]) -> dict[str, Any] | None:
    """config.json of a Hugging Face folder: `model_type`, `architectures` and the hf_config
    arguments, a word that names a model parameter replaced by its value; None without one."""
    if weights.hf_config is None:
        return None
    out: dict[str, Any] = {"model_type": weights.hf_config.name}
    if weights.hf_architecture:
        out["architectures"] = [weights.hf_architecture]
    for key, value in weights.hf_config.kwargs.items():
        out[key] = params.get(value, value) if isinstance(value, str) else value
    return out


__all__ = ["check_weights", "hf_values", "model_params", "regex_problem"]
