"""The language reference of layer kinds, generated from the registry so it cannot drift."""
from __future__ import annotations

from .layers import REGISTRY

CATEGORY_ORDER = ["linear", "convolution", "pooling", "normalization", "activation", "dropout",
                  "embedding", "recurrent", "attention", "transformer", "tensor", "vision", "other"]


def _type_text(field) -> str:
    text = str(field.annotation)
    for old, new in (("typing.", ""), ("Annotated[int, Gt(gt=0)]", "int>0"),
                     ("Annotated[int, Ge(ge=0)]", "int>=0"), ("NoneType", "none"),
                     ("<class '", ""), ("'>", ""), ("Optional[", "none | "), ("Union[", "")):
        text = text.replace(old, new)
    return text.replace("]]", "]") if text.count("[") < text.count("]") else text


def _args(cls) -> str:
    parts = []
    for name, f in cls.model_fields.items():
        parts.append(name if f.is_required() else f"{name}={_default(f.default)}")
    return ", ".join(parts)


def _default(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_default(v) for v in value) + "]"
    return repr(value)


def reference_markdown() -> str:
    """Markdown for every layer kind: signature, inputs, torch equivalent, arguments."""
    by_cat: dict[str, list] = {}
    for kind in sorted(REGISTRY):
        by_cat.setdefault(REGISTRY[kind].category, []).append(REGISTRY[kind])
    cats = [c for c in CATEGORY_ORDER if c in by_cat] + sorted(set(by_cat) - set(CATEGORY_ORDER))
    out = []
    for cat in cats:
        out.append(f"### {cat.capitalize()}\n")
        for cls in by_cat[cat]:
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            inputs = ", ".join(cls.inputs)
            torch_name = f" (`{cls.torch_name}`)" if cls.torch_name else ""
            out.append(f"- **`{cls.kind}({_args(cls)})`**{torch_name}: {doc} Inputs: `{inputs}`.")
            for name, f in cls.model_fields.items():
                if f.description:
                    out.append(f"  - `{name}` ({_type_text(f)}): {f.description}")
        out.append("")
    return "\n".join(out)
