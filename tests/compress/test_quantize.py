"""Quantization kernels against float references: weight-only int8/int4 round trips, casting,
dynamic int8 for nnspec's batch-first LSTM, static int8 through FX with nnspec runtime modules."""
import pytest
import torch
from torch import nn

import nnspec
from nnspec.compress import quantize
from nnspec.compress.directives import Quantize, Target


def _d(method, dtype="int8", layers=(), **kw):
    return Quantize(method, dtype, Target(("linear",)), layers=layers, **kw)


@pytest.mark.parametrize("dtype, tol", [("int8", 0.01), ("int4", 0.15)])
def test_weight_only_linear_round_trips(dtype, tol):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    q = quantize.weight_only(net, _d("weight_only", dtype, ("0", "2"), group_size=32))
    x = torch.randn(16, 64)
    ref = net(x)
    err = (q(x) - ref).norm() / ref.norm()
    assert err < tol
    stored = sum(b.numel() * b.element_size() for b in q.buffers())
    floats = sum(p.numel() * 4 for n, p in net.named_parameters() if n.endswith("weight"))
    assert stored < floats / (3.5 if dtype == "int8" else 6)


def test_cast_runs_chosen_layers_in_half_precision():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    q = quantize.cast(net, _d("cast", "bf16", ("0",)))
    assert q[0].inner.weight.dtype == torch.bfloat16 and q[2].weight.dtype == torch.float32
    x = torch.randn(4, 8)
    out = q(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, net(x), rtol=0.05, atol=0.05)


def test_dynamic_int8_lstm_keeps_the_sequence_interface():
    spec = nnspec.loads("""
model seq {
  input ids: long[12]
  emb: embedding(30, 16)
  rnn: lstm(32, last=true)
  fc: linear(5)
}""", name="seq.nn")
    torch.manual_seed(0)
    model = spec.build().eval()
    q = quantize.dynamic_int8(model, _d("dynamic", layers=("rnn", "fc")))
    assert "quantized" in type(q.rnn.rnn).__module__
    ids = torch.randint(0, 30, (4, 12))
    torch.testing.assert_close(q(ids), model(ids), rtol=0.05, atol=0.05)


def test_static_int8_traces_around_nnspec_runtime_modules():
    spec = nnspec.loads("""
model cnn {
  input x: float[1, 8, 8]
  c1: conv2d(8, 3, padding=1)
  bn: batchnorm2d
  relu
  pool: global_avgpool
  fc: linear(10)
}""", name="cnn.nn")
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.randn(32, 1, 8, 8)
    d = _d("static", layers=("c1", "fc"))
    prepared = quantize.prepare_static(model, d, (x[:2],))
    quantize.calibrate(prepared, [(x,)])
    q = quantize.convert(prepared)
    ref = model(x)
    assert (q(x) - ref).norm() / ref.norm() < 0.05
