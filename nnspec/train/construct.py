"""Sharded construction: build only what this rank will hold, with the values a one-process
`build()` gives under the same seed.

nnspec's weights come from PyTorch's default initialization, drawn from the global generator in
construction order (`seed_everything(seed)` then `Model()`). Every path below keeps that order, so
the weights do not depend on the layout:

* ZeRO-3: the model is constructed inside `deepspeed.zero.Init`, which partitions each module's
  parameters (cast to the training precision) as soon as its constructor returns; every rank
  draws the whole stream in fp32, and holds its shard plus one module at a time.
* Pipeline stages: a first pass on the meta device (no storage, no draws) learns which tensors
  the local stage's layers use; a second pass constructs on the CPU and, each time a finished
  module is attached to its parent, replaces the tensors no local layer uses by meta tensors.
  The draws up to the stage's last tensor are the same as `build()`'s; the modules after it
  are constructed on the meta device (their draws cannot change the stage's values), so the
  rank holds its stage, or before it one earlier module at a time, never a later one.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.module import register_module_module_registration_hook


def zero3_model(spec, config: dict) -> nn.Module:
    """The spec's model constructed inside `deepspeed.zero.Init` with this run's DeepSpeed
    config: parameters are partitioned across the data-parallel ranks as they are created."""
    with _zero_init(config):
        return spec.build()


def _zero_init(config: dict):
    """zero.Init that draws every tensor in fp32, as `build()` does, and casts each module's
    parameters to the training precision just before partitioning them. zero.Init's own dtype
    would create them in bf16 before the layer initializes them, and a bf16 `uniform_` draws
    other numbers than an fp32 one cast to bf16 (nn.Linear's weights differ by up to 0.1)."""
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import DeepSpeedTensorOverride, is_zero_param

    target = (torch.bfloat16 if config.get("bf16", {}).get("enabled") else
              torch.float16 if config.get("fp16", {}).get("enabled") else torch.float32)

    class Init(deepspeed.zero.Init):
        def _post_init_method(self, module):
            for param in module.parameters(recurse=False):
                if not is_zero_param(param) and param.is_floating_point():
                    param.data = param.data.to(target)
            super()._post_init_method(module)

    # tensors keep the device override and lose the dtype one (passing dtype=torch.float32 does
    # not do it: DeepSpeed 0.19 then picks bf16 on a CPU without fp16)
    return Init(config_dict_or_path=config, tensor_overrides=[DeepSpeedTensorOverride.device])


@contextmanager
def _attachments(on_attach: Callable[[int, nn.Module], None]) -> Iterator[None]:
    """Call `on_attach(k, child)` at the k-th time a module is registered as a submodule
    (`self.x = Child(...)`, ModuleList/Sequential items): by then the child's constructor, and
    so its initialization, has finished. The k-th attachment is the same module in every
    construction of the same source."""
    count = [0]

    def hook(_parent, _name, child):
        if child is not None:
            on_attach(count[0], child)
        count[0] += 1

    handle = register_module_module_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _own(module: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    """The tensors a module holds itself (not its children's): (kind, name, tensor)."""
    return ([("param", n, t) for n, t in module._parameters.items() if t is not None]
            + [("buffer", n, t) for n, t in module._buffers.items() if t is not None])


def _to_meta(module: nn.Module, kind: str, name: str) -> None:
    table = module._parameters if kind == "param" else module._buffers
    t = table[name]
    if t is None or t.is_meta:
        return
    meta = t.detach().to("meta")
    table[name] = nn.Parameter(meta, requires_grad=t.requires_grad) if kind == "param" else meta


def stage_model(make: Callable[[], nn.Module],
                local: Callable[[nn.Module], list[nn.Module | torch.Tensor]]) -> nn.Module:
    """`make()`'s model with real tensors only where `local(model)` (the modules and parameters
    this rank's pipeline layers use) reaches them; every other tensor is on the meta device.
    The real tensors equal those of a plain `make()` from the same generator state. The
    generator ends where `make()` leaves it only when the stage's last tensor is the model's
    last draw (the last stage): callers reseed after construction."""
    attached: dict[int, list[tuple[str, str, torch.Tensor]]] = {}
    state = torch.get_rng_state()
    with torch.device("meta"), _attachments(lambda k, child: attached.__setitem__(k, _own(child))):
        skeleton = make()
    torch.set_rng_state(state)  # meta draws nothing; restored all the same
    keep = set()
    for item in local(skeleton):
        tensors = [item] if isinstance(item, torch.Tensor) else [
            *item.parameters(), *item.buffers()]
        keep.update(id(t) for t in tensors)
    drop = {k: [(kind, name) for kind, name, t in own if id(t) not in keep]
            for k, own in attached.items()}
    root_own = _own(skeleton)
    root_drop = [(kind, name) for kind, name, t in root_own if id(t) not in keep]
    # the attachment that completes the stage's last tensor; after it, nothing local is made
    # (unless the root holds a local tensor itself: it may be made at any point of its __init__)
    local_attached = [k for k, own in attached.items() if any(id(t) in keep for _, _, t in own)]
    last = None if len(root_drop) < len(root_own) else max(local_attached, default=-1)
    del skeleton, attached

    with ExitStack() as later:
        if last == -1:
            later.enter_context(torch.device("meta"))

        def release(k: int, child: nn.Module) -> None:
            for kind, name in drop.get(k, ()):
                _to_meta(child, kind, name)
            if k == last:  # the rest of the model belongs to later stages
                later.enter_context(torch.device("meta"))

        with _attachments(release):
            model = make()
    for kind, name in root_drop:
        _to_meta(model, kind, name)
    return model
