"""Device profiles: what one accelerator of a cluster can do, for the step-time estimate.

Shipped profiles live beside this module as JSON (`nnspec/plan/profiles/*.json`); a user passes
the name of one (`--profile h100-80gb`) or the path of their own JSON file with the same fields.
Peak rates are dense (no sparsity) vendor figures; `efficiency` is the fraction of peak a
well-tuned training step reaches (model FLOPs utilization).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

DEFAULT_PROFILE = "a100-80gb"


class ProfileError(ValueError):
    """A profile that cannot be found or read; the message says what to do."""


class Profile(BaseModel):
    """One accelerator, its memory and links. Bandwidths are GB/s (1e9 bytes/s) per GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    memory_gb: PositiveFloat = Field(description="memory per accelerator, GB (1e9 bytes)")
    peak_tflops: dict[str, PositiveFloat] = Field(description="dense peak TFLOP/s by precision: "
                                                  "fp32, bf16, fp16")
    efficiency: float = Field(0.4, gt=0, le=1, description="fraction of peak a step reaches")
    memory_bandwidth_gbs: PositiveFloat
    intra_node_gbs: PositiveFloat = Field(description="collective bus bandwidth inside a machine")
    inter_node_gbs: PositiveFloat = Field(description="network bandwidth per GPU between machines")
    host_link_gbs: PositiveFloat = Field(description="GPU <-> CPU memory (PCIe, NVLink-C2C)")
    nvme_gbs: PositiveFloat = Field(3.0, description="NVMe read/write per GPU")
    cpu_optimizer_gparams_per_s: PositiveFloat = Field(
        1.0, description="billions of parameters per second DeepSpeed's CPU Adam updates, per rank")
    reserved_gb: float = Field(1.0, ge=0, description="memory the runtime keeps (CUDA context, "
                               "allocator slack), GB")

    def peak(self, precision: str) -> float:
        """Peak FLOP/s in a precision (fp32 when the profile has no entry for it)."""
        return 1e12 * self.peak_tflops.get(precision, self.peak_tflops.get("fp32", 1.0))


def shipped_profiles() -> list[str]:
    folder = resources.files("nnspec.plan") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str | None) -> Profile:
    """A shipped profile by name, or a JSON file by path.

    Raises:
        ProfileError: unknown name, unreadable file, or fields that do not validate.
    """
    name = name_or_path or DEFAULT_PROFILE
    if name.endswith(".json") or "/" in name or Path(name).is_file():
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ProfileError(f"cannot read profile {name}: {err.strerror}") from None
        where = str(path)
    else:
        resource = resources.files("nnspec.plan") / "profiles" / f"{name.lower()}.json"
        if not resource.is_file():
            from nnspec.lang.diagnostics import did_you_mean

            names = shipped_profiles()
            hint = did_you_mean(name.lower(), names)
            raise ProfileError(f"unknown profile `{name}`" + (f"; {hint}" if hint else "")
                               + f" (shipped: {', '.join(names)}; or give a .json file)")
        text, where = resource.read_text(encoding="utf-8"), f"profile {name}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(f"{where}: not JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(data, dict) and "name" not in data:
        data["name"] = Path(where).stem
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'profile'}: {e['msg']}"
                             for e in err.errors()[:5])
        raise ProfileError(f"{where}: {problems}") from None
