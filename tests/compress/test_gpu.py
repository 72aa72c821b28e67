"""The GPU path of the quantization directives that run there: fp16/bf16 casting and weight-only
int8/int4 (torch.ao's int8 kernels are CPU-only). Skipped without CUDA."""
import time

import pytest
import torch
from torch import nn

from nnspec.compress import quantize
from nnspec.compress.directives import Quantize, Target

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _mlp(width=4096):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1024, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10)).cuda().eval()


def _median_ms(model, x, runs=30):
    times = []
    with torch.no_grad():
        for _ in range(5):
            model(x)
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


@cuda
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cast_on_the_gpu_is_close_and_faster(dtype):
    model = _mlp()
    q = quantize.cast(model, Quantize("cast", dtype, Target(("linear",)), layers=("0", "2", "4")))
    x = torch.randn(4096, 1024, device="cuda")
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert ((out - ref).norm() / ref.norm()).item() < 0.02
    fp32, half = _median_ms(model, x), _median_ms(q, x)
    print(f"{dtype}: fp32 {fp32:.3f} ms, {dtype} {half:.3f} ms, {fp32 / half:.2f}x")
    assert half < fp32


@cuda
@pytest.mark.parametrize("dtype, tol", [("int8", 0.01), ("int4", 0.15)])
def test_weight_only_on_the_gpu_is_close_and_smaller(dtype, tol):
    model = _mlp(1024)
    q = quantize.weight_only(model, Quantize("weight_only", dtype, Target(("linear",)),
                                             layers=("0", "2", "4"), group_size=32))
    x = torch.randn(256, 1024, device="cuda")
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert ((out - ref).norm() / ref.norm()).item() < tol
    stored = sum(b.numel() * b.element_size() for b in q.buffers())
    assert stored < sum(p.numel() * 4 for p in model.parameters()) / 3
    assert all(b.device.type == "cuda" for b in q.buffers())
