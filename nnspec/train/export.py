"""`nnspec export-weights CKPT -o model.safetensors`: one plain fp32 state_dict from a checkpoint.

CKPT is what `nnspec train` wrote: a one-process checkpoint file (`checkpoints/step-00000120.pt`),
a DeepSpeed checkpoint folder (`checkpoints/step-00000120/`, ZeRO 0-3, fp32 or bf16), an engine
ddp folder (a file per rank; their average model is exported), the run's `checkpoints/` folder,
or the run's output folder (then the newest complete checkpoint). ZeRO shards are consolidated
with DeepSpeed's own `zero_to_fp32`; bf16 runs export their fp32 master weights; a
tensor-parallel run's shards are put back together with the map AutoTP saves (export_tensor.py).
The result loads into `spec.build()` with `strict=True`.

A DeepSpeed folder is complete only with its `nnspec.json` marker, which rank 0 writes after every
rank has saved (distributed.py); a folder without it is a save that was cut short, and one whose
files no longer have the sizes the marker lists is damaged (checkpoint.is_complete). Every file
is loaded with the weights-only unpickler (safeload.py) before DeepSpeed's `zero_to_fp32`, which
unpickles, opens it: a file that holds more than weights is refused, and no code in it runs.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch

from nnspec.outputs import replace_file
from nnspec.train import ddp_checkpoint
from nnspec.train.checkpoint import MARKER, is_complete, steps_in
from nnspec.train.errors import TrainError
from nnspec.train.export_tensor import is_tensor_parallel, tensor_parallel_weights
from nnspec.train.safeload import UnsafeCheckpoint, safe_load, verify_folder

log = logging.getLogger("nnspec.train")
FORMATS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch"}
WRAPPERS = ("module.", "_orig_mod.")  # DeepSpeed/DDP wrappers, torch.compile


class ExportError(TrainError):
    """A checkpoint that cannot be exported: missing, foreign, incomplete or damaged."""


def export_weights(ckpt: str | Path, out: str | Path, spec=None,
                   hf: bool = False) -> tuple[Path, int]:
    """Consolidate `ckpt` into one fp32 state_dict written atomically to `out`.

    Args:
        ckpt: a checkpoint file or folder, the checkpoints/ folder or the run's folder.
        out: `*.safetensors` or `*.pt` (also `.pth`, `.bin`).
        spec: a `nnspec.Spec`; when given, the weights must load into `spec.build()` strictly,
            and are written in its state_dict order.
        hf: write `out` as a Hugging Face folder (config.json + model.safetensors) through
            `spec`'s weights section (nnspec.weights.hf); needs `spec`.

    Returns:
        The checkpoint used, and the number of tensors written.

    Raises:
        ExportError: a missing, foreign, incomplete, damaged or unsafe (safeload.py) checkpoint,
            a bad output name, or weights that do not fit `spec`. Nothing is written then.
    """
    out = Path(out)
    kind = "hf" if hf else FORMATS.get(out.suffix.lower())
    if hf and spec is None:
        raise ExportError("a Hugging Face folder needs --spec: its weights section maps the names")
    if kind is None:
        raise ExportError(f"cannot tell the format of `{out}` from its extension",
                          "name the output *.safetensors or *.pt")
    try:
        path, weights = load_checkpoint_weights(Path(ckpt), spec)
    except UnsafeCheckpoint as err:
        raise ExportError(err.message, err.hint) from None
    model = spec.build() if spec is not None else None
    weights = _unwrap(weights, set(model.state_dict()) if model is not None else set())
    if model is not None:
        weights = _fit(weights, model, spec.name)
    if hf:
        from nnspec.weights.hf import write_hf_folder
        try:
            write_hf_folder(weights, spec, out)
        except ExportError:
            raise
        except TrainError as err:  # no hf_config: the spec has no transformers counterpart
            raise ExportError(err.message, err.hint) from None
    else:
        _write(weights, out, kind)
    return path, len(weights)


def load_checkpoint_weights(ckpt: Path, spec=None) -> tuple[Path, dict[str, torch.Tensor]]:
    """(the checkpoint used, its weights as fp32 tensors of their own) for any CKPT form; a
    pipeline checkpoint needs the spec, whose partition names its layers.

    Raises:
        ExportError: no usable checkpoint; a damaged one is passed over for an older one.
        UnsafeCheckpoint: a file that holds more than weights, which is never passed over.
    """
    if not ckpt.exists():
        raise ExportError(f"no such checkpoint: {ckpt}")
    if ckpt.is_file():
        return ckpt, _local_weights(ckpt)
    if _is_deepspeed_folder(ckpt):
        if not (ckpt / MARKER).is_file():
            raise ExportError(f"{ckpt} is an incomplete checkpoint: it has no {MARKER}, so its "
                              "save was cut short", "export an older checkpoint, or the run's "
                              "checkpoints/ folder to take the newest complete one")
        if not is_complete(ckpt):
            raise ExportError(f"{ckpt} is damaged: a file it lists in {MARKER} is missing or "
                              "torn", "export an older checkpoint")
        return ckpt, _deepspeed_weights(ckpt, spec)
    folder = ckpt / "checkpoints" if not steps_in(ckpt) and (ckpt / "checkpoints").is_dir() \
        else ckpt
    candidates = [p for _, p in steps_in(folder) if p.is_file() or is_complete(p)]
    if not candidates:
        what = "no complete checkpoint" if steps_in(folder) else "no checkpoint"
        raise ExportError(f"{what} in {ckpt}", "pass a checkpoint written by `nnspec train` "
                          "(checkpoints/step-NNNNNNNN.pt or checkpoints/step-NNNNNNNN/)")
    last = None
    for path in candidates:
        try:
            return path, (_local_weights(path) if path.is_file()
                          else _deepspeed_weights(path, spec))
        except ExportError as err:  # a damaged one: the previous may be whole
            log.warning("skipping %s: %s", path, err.message)
            last = err
    raise ExportError(f"no readable checkpoint in {ckpt}: the newest says: {last.message}",
                      last.hint)


# ---- the two layouts -----------------------------------------------------------------------------

def _local_weights(path: Path) -> dict[str, torch.Tensor]:
    """A one-process checkpoint: {"model": state_dict, "optimizer": ..., "rng": ...}."""
    try:
        payload = safe_load(path)
    except UnsafeCheckpoint:
        raise
    except Exception as err:  # noqa: BLE001 - torn, foreign or not a torch file at all
        raise ExportError(f"{path} is not a readable checkpoint ({_first_line(err)})") from None
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise ExportError(f"{path} is not a checkpoint written by `nnspec train` (it holds no "
                          "model state_dict)")
    return _plain(model)


def _is_deepspeed_folder(path: Path) -> bool:
    return (path / MARKER).is_file() or any(path.glob("*model_states.pt"))


def _deepspeed_weights(folder: Path, spec=None) -> dict[str, torch.Tensor]:
    """Whole fp32 weights from a DeepSpeed step folder: the ZeRO shards' fp32 partitions when
    there are any (ZeRO 1-3, and bf16 at any stage), else the saved module (ZeRO 0, fp32); a
    pipeline's layer files under the names the spec's partition gives them; an engine ddp
    folder's rank files (ddp_checkpoint.weights)."""
    if ddp_checkpoint.is_ddp_folder(folder):
        try:
            return _plain(ddp_checkpoint.weights(folder))
        except (UnsafeCheckpoint, ExportError):
            raise
        except TrainError as err:
            raise ExportError(err.message, err.hint) from None
    if not any(folder.glob("*model_states.pt")):
        raise ExportError(f"{folder} has no DeepSpeed model states: its save was cut short or "
                          "files were removed")
    if any(folder.glob("layer_*-model_states.pt")):
        return _pipeline_weights(folder, spec)
    try:
        if is_tensor_parallel(folder):  # zero_to_fp32 alone would mix the tensor ranks' shards
            verify_folder(folder)
            return _plain(tensor_parallel_weights(folder, _with_masters, _zero_fp32))
        if any(folder.glob("*optim_states.pt")):
            verify_folder(folder)  # zero_to_fp32 unpickles every model and optimizer file
            return _plain(_zero_fp32(folder))
        return _plain(_with_masters(safe_load(folder / "mp_rank_00_model_states.pt")))
    except (ExportError, UnsafeCheckpoint):
        raise
    except Exception as err:  # noqa: BLE001 - truncated shards, missing ranks, foreign files
        raise ExportError(f"{folder} is damaged ({_first_line(err)})",
                          "export an older checkpoint") from None


def _pipeline_weights(folder: Path, spec) -> dict[str, torch.Tensor]:
    """A pipeline checkpoint: one file per pipeline layer (`layer_07-model_states.pt`, the
    layer's own state_dict, `m.` + the names inside the module it calls), saved by the stage
    that holds it. The spec's partition (nnspec/place/partition.py) says which module layer 7 is. A
    tied layer is saved by the first stage-local holder; the others share its weights. bf16 runs
    export the saved (bf16) module weights."""
    if spec is None:
        raise ExportError(f"{folder} is a pipeline checkpoint: naming its layers needs the spec",
                          "pass --spec SPEC (and the --set values the run was trained with)")
    units = spec.partition.units
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("layer_*-model_states.pt")):
        index = int(path.name[len("layer_"):].split("-")[0])
        try:
            sd = safe_load(path)
        except UnsafeCheckpoint:
            raise
        except Exception as err:  # noqa: BLE001 - a torn file
            raise ExportError(f"{path} is damaged ({_first_line(err)})",
                              "export an older checkpoint") from None
        if index >= len(units) or (sd and not units[index].path):
            raise ExportError(f"{path.name} does not match {spec.name}'s {len(units)} pipeline "
                              "layers", "pass the spec (and --set values) the run was trained "
                              "with")
        for key, value in sd.items():
            name = key[2:] if key.startswith("m.") else key
            out[f"{units[index].path}.{name}"] = value
    return _plain(out)


def _with_masters(states: dict) -> dict[str, torch.Tensor]:
    """A ZeRO-0 module state_dict, with the optimizer's fp32 master weights in place of bf16 ones.

    The masters are a flat list in parameter order; the module's keys, buffers and tied aliases
    (which share storage) left out, are that order too. Each is checked to round to the module's
    value; if any does not, the module's own (bf16) weights are kept.
    """
    module = states["module"]
    masters = [t for group in (states.get("optimizer") or {}).get("fp32_groups") or []
               for t in group]
    half = [k for k, v in module.items() if v.is_floating_point() and v.dtype != torch.float32]
    if not masters or not half:
        return module
    buffers, seen, out = set(states.get("buffer_names") or ()), {}, dict(module)
    params = [k for k in module if k not in buffers]
    firsts = [k for k in params if seen.setdefault(_storage(module[k]), k) == k]
    fits = len(firsts) == len(masters) and all(
        m.shape == module[k].shape and torch.equal(m.to(module[k].dtype), module[k])
        for k, m in zip(firsts, masters))
    if not fits:
        log.warning("the fp32 master weights do not match the saved module; exporting its "
                    "%s weights", module[half[0]].dtype)
        return module
    out.update(zip(firsts, masters))
    for k in params:  # tied aliases: the master of the weight they share
        out[k] = out[seen[_storage(module[k])]]
    return out


def _storage(t: torch.Tensor) -> tuple:
    return t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)


def _zero_fp32(folder: Path) -> dict[str, torch.Tensor]:
    """DeepSpeed's consolidation, its progress prints kept off the command's output."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return get_fp32_state_dict_from_zero_checkpoint(str(folder.parent), tag=folder.name)


# ---- names, the spec, the file -------------------------------------------------------------------

def _plain(sd: dict) -> dict[str, torch.Tensor]:
    """fp32 (floats), on the CPU, each tensor its own storage: safetensors refuses shared tensors
    (tied weights), and the loop's model.safetensors holds clones too."""
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().contiguous()
            .clone() for k, v in sd.items()}


def _unwrap(sd: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper's prefix that every key carries (`module.` of DeepSpeed and DDP,
    `_orig_mod.` of torch.compile), unless the model's own names (`own`) are those keys."""
    for prefix in WRAPPERS:
        if sd and all(k.startswith(prefix) for k in sd) and not (own and set(sd) <= own):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _fit(sd: dict[str, torch.Tensor], model: torch.nn.Module, name: str
         ) -> dict[str, torch.Tensor]:
    """The weights in the model's state_dict order, tied aliases filled in, checked by a strict
    load into the model (built from the spec)."""
    own = model.state_dict(keep_vars=True)
    aliases: dict[int, list[str]] = {}
    for key, t in own.items():
        aliases.setdefault(id(t), []).append(key)
    for keys in aliases.values():  # a tied weight saved under one of its names only
        have = next((k for k in keys if k in sd), None)
        for k in keys:
            if have is not None and k not in sd:
                sd[k] = sd[have].clone()
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError:
        raise ExportError(f"the checkpoint does not fit {name}: {_mismatch(sd, own)}",
                          "pass the spec (and --set values) the run was trained with") from None
    return {k: sd[k] for k in own}


def _write(sd: dict[str, torch.Tensor], out: Path, kind: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "torch":  # a temporary file of its own, so concurrent exports never mix
        replace_file(out, lambda tmp: torch.save(sd, tmp))
        return
    from safetensors.torch import save_file
    replace_file(out, lambda tmp: save_file(sd, str(tmp), metadata={"format": "pt"}))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _mismatch(sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> str:
    """What differs between checkpoint and model, a few names of each kind."""
    def few(names) -> str:
        names = sorted(names)
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    missing, unexpected = own.keys() - sd.keys(), sd.keys() - own.keys()
    shapes = [f"{k} {list(sd[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in sd and sd[k].shape != own[k].shape]
    parts = ([f"missing {few(missing)}"] if missing else []) + \
        ([f"unexpected {few(unexpected)}"] if unexpected else []) + \
        ([f"shape of {few(shapes)}"] if shapes else [])
    return "; ".join(parts) or "the weights do not load"


__all__ = ["export_weights", "load_checkpoint_weights", "ExportError"]
