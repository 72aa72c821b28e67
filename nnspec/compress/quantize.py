"""Quantization on the CPU with PyTorch's own kernels (fbgemm / x86 / onednn).

- dynamic int8: torch.ao.quantization.quantize_dynamic for linear layers; nnspec's batch-first
  LSTM/GRU wrappers are swapped for torch's dynamic quantized LSTM/GRU.
- static int8: FX graph mode (prepare_fx -> calibrate on training batches -> convert_fx) with the
  x86 qconfig; nnspec's own runtime modules that FX cannot trace stay float leaves.
- qat: FX prepare_qat_fx (fake quant while fine-tuning), convert_fx at the end.
- weight-only int8/int4: weights stored as integers with per-row (int8) or per-group (int4)
  scales, dequantized on the fly; smaller, not faster on the CPU.
- cast: fp16/bf16 copies of the chosen layers, inputs cast at their boundary.

torchao's int8 configs ran slower than fp32 on this CPU in eager mode (ENVIRONMENT.md), so the
CPU path is torch.ao's; on a GPU the same directives run (cast and weight-only there too).
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from nnspec.compress.checked import Quantize

STATIC_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


class _QuantizedSequence(nn.Module):
    """A dynamic quantized LSTM/GRU behind nnspec's batch-first, output-only interface."""

    def __init__(self, rnn: nn.Module, last: bool):
        super().__init__()
        self.rnn, self.last = rnn, last

    def forward(self, x):
        out = self.rnn(x)[0]
        return out[:, -1] if self.last else out


def dynamic_int8(model: nn.Module, d: Quantize) -> nn.Module:
    """Linear/LSTM/GRU weights to int8; activations quantized per batch at run time."""
    from torch.ao.nn.quantized import dynamic as qd
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    torch.backends.quantized.engine = _engine(d.backend)
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linears = {n for n in d.layers if isinstance(model.get_submodule(n), nn.Linear)}
        for name in d.layers:
            mod = model.get_submodule(name)
            if isinstance(mod, (nn.LSTM, nn.GRU)):
                rnn = (nn.LSTM if isinstance(mod, nn.LSTM) else nn.GRU)(
                    mod.input_size, mod.hidden_size, mod.num_layers, mod.bias, True, mod.dropout,
                    mod.bidirectional)
                rnn.load_state_dict(mod.state_dict())
                rnn.qconfig = default_dynamic_qconfig
                cls = qd.LSTM if isinstance(mod, nn.LSTM) else qd.GRU
                _set_submodule(model, name, _QuantizedSequence(cls.from_float(rnn),
                                                               getattr(mod, "last", False)))
        if linears:
            model = quantize_dynamic(model, {n: default_dynamic_qconfig for n in linears},
                                     dtype=torch.qint8)
    return model


def _engine(backend: str) -> str:
    engines = torch.backends.quantized.supported_engines
    for name in (backend, "x86", "fbgemm", "onednn", "qnnpack"):
        if name in engines:
            return name
    return engines[0]


def _fx_configs(model: nn.Module, d: Quantize, qat: bool):
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig

    engine = _engine(d.backend)
    torch.backends.quantized.engine = engine
    full = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(engine)
    # only the chosen layers (and the ops between them) are quantized; skipped ones stay float
    mapping = copy.deepcopy(full)
    chosen = set(d.layers)
    for name, mod in model.named_modules():
        if isinstance(mod, STATIC_MODULES) and name not in chosen:
            mapping.set_module_name(name, None)
    # nnspec runtime modules (GlobalAvgPool, SeparableConv2d...) use Python control flow FX cannot
    # trace; they stay float leaves, with dequantize/quantize around them
    own = {type(m) for m in model.modules() if m is not model
           and not type(m).__module__.startswith("torch.")}
    custom = PrepareCustomConfig().set_non_traceable_module_classes(sorted(own, key=str))
    return mapping, custom


def prepare_static(model: nn.Module, d: Quantize, example: tuple, qat: bool = False) -> nn.Module:
    """An FX-traced copy with observers (static) or fake quantization (qat)."""
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    model = copy.deepcopy(model)
    mapping, custom = _fx_configs(model, d, qat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if qat:
            return prepare_qat_fx(model.train(), mapping, example, prepare_custom_config=custom)
        return prepare_fx(model.eval(), mapping, example, prepare_custom_config=custom)


def convert(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_fx(prepared.eval())


@torch.no_grad()
def calibrate(prepared: nn.Module, batches) -> None:
    prepared.eval()
    for inputs in batches:
        prepared(*inputs)


# ---- weight-only -------------------------------------------------------------------------------

class WeightOnlyLinear(nn.Module):
    """A linear layer whose weight is stored as int8 (per output row scales) or int4 (two per
    byte, one scale per `group_size` inputs), dequantized to float for each forward."""

    def __init__(self, linear: nn.Linear, bits: int, group_size: int):
        super().__init__()
        w = linear.weight.detach().float()
        self.bits, self.shape = bits, tuple(w.shape)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=False)
        if bits == 8:
            scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
            self.register_buffer("qweight", (w / scale).round().clamp(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale.to(torch.float16))
        else:
            g = group_size if w.shape[1] % group_size == 0 else w.shape[1]
            groups = w.reshape(w.shape[0], -1, g)
            scale = groups.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 7
            q = (groups / scale).round().clamp(-8, 7).to(torch.int8).reshape(w.shape[0], -1)
            nibbles = (q + 8).to(torch.uint8)
            self.register_buffer("qweight", nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))
            self.register_buffer("scale", scale.to(torch.float16))
            self.group = g

    def weight(self) -> torch.Tensor:
        if self.bits == 8:
            return self.qweight.float() * self.scale.float()
        low = (self.qweight & 0xF).to(torch.int8) - 8
        high = (self.qweight >> 4).to(torch.int8) - 8
        q = torch.stack([low, high], -1).reshape(self.shape[0], -1, self.group).float()
        return (q * self.scale.float()).reshape(self.shape)

    def forward(self, x):
        return nn.functional.linear(x, self.weight().to(x.dtype), self.bias)


class WeightOnlyEmbedding(nn.Module):
    """An embedding table stored as int8 with per-row scales."""

    def __init__(self, emb: nn.Embedding):
        super().__init__()
        w = emb.weight.detach().float()
        scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
        self.register_buffer("qweight", (w / scale).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.float16))
        self.padding_idx = emb.padding_idx

    def forward(self, ids):
        return self.qweight[ids].float() * self.scale[ids].float()


def weight_only(model: nn.Module, d: Quantize) -> nn.Module:
    model = copy.deepcopy(model).eval()
    bits = 4 if d.dtype == "int4" else 8
    for name in d.layers:
        mod = model.get_submodule(name)
        if isinstance(mod, nn.Linear):
            _set_submodule(model, name, WeightOnlyLinear(mod, bits, d.group_size))
        elif isinstance(mod, nn.Embedding):
            _set_submodule(model, name, WeightOnlyEmbedding(mod))
    return model


# ---- casting -----------------------------------------------------------------------------------

class _Cast(nn.Module):
    """Runs a layer in half precision: inputs cast in, outputs cast back to float."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner.to(dtype), dtype

    def forward(self, *args):
        out = self.inner(*[a.to(self.dtype) if a.is_floating_point() else a for a in args])
        return out.float() if torch.is_tensor(out) and out.is_floating_point() else out


def cast(model: nn.Module, d: Quantize) -> nn.Module:
    dtype = torch.float16 if d.dtype == "fp16" else torch.bfloat16
    model = copy.deepcopy(model).eval()
    for name in d.layers:
        _set_submodule(model, name, _Cast(model.get_submodule(name), dtype))
    return model
