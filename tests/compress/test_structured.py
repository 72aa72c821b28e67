"""Structured channel pruning: a smaller dense model, the same function where nothing was cut, and
a written-back spec whose build() loads the pruned weights strictly."""
import torch

import nnspec
from nnspec.compress.structured import prune_channels

RESIDUAL_CAT = """
model net(num_classes = 10) {
  input x: float[1, 8, 8]
  h = x -> stem: conv2d(16, 3, padding=1, bias=false) -> bn0: batchnorm2d -> relu
  a = h -> c1: conv2d(16, 3, padding=1) -> bn1: batchnorm2d -> relu
  r = a + h
  b = r -> c2: conv2d(8, 3, padding=1) -> relu
  c = r -> c3: conv2d(8, 1) -> relu
  both = cat(b, c, dim=1)
  f = both -> pool: maxpool2d(2) -> flatten
  out f -> fc: linear(num_classes)
}

compress {
  prune = channels(0.5, on=[conv2d])
}
"""


def _load(text, **kw):
    return nnspec.loads(text, name="net.nn", **kw)


def _pruned(text):
    spec = _load(text)
    torch.manual_seed(0)
    model = spec.build().eval()
    for m in model.modules():   # non-trivial batch norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 1, 8, 8)
    return spec, model, *prune_channels(model, spec, spec.compress_plan.prune, (x,)), x


def test_residual_and_concat_are_cut_consistently():
    spec, model, pruned, new_text, new_spec, x = _pruned(RESIDUAL_CAT)
    # the residual joins stem and c1: they keep the same 8 channels
    assert pruned.stem.out_channels == pruned.c1.out_channels == 8
    assert pruned.c1.in_channels == 8 and pruned.bn1.num_features == 8
    assert pruned.c2.out_channels == pruned.c3.out_channels == 4
    assert pruned.fc.in_features == 8 * 4 * 4
    assert pruned(x).shape == (4, 10)
    # the new spec says so, and builds the same module
    assert "stem: conv2d(8, 3" in new_text and "c2: conv2d(4, 3" in new_text
    assert "compress {" not in new_text
    rebuilt = new_spec.build().eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    assert torch.equal(rebuilt(x), pruned(x))
    assert new_spec.summary()["params"] == sum(p.numel() for p in pruned.parameters())


def test_zeroed_channels_are_removed_without_changing_the_function():
    """Channels whose filters are exactly zero contribute nothing: cutting them (and the inputs
    that read them) leaves the outputs as they were."""
    text = """
model seq {
  input x: float[1, 8, 8]
  c1: conv2d(8, 3, padding=1)
  relu
  c2: conv2d(8, 3, padding=1)
  relu
  flatten
  fc: linear(10)
}
compress { prune = channels(0.5, on=["c*"]) }
"""
    spec = _load(text)
    torch.manual_seed(0)
    model = spec.build().eval()
    with torch.no_grad():
        for conv in (model.c1, model.c2):
            conv.weight[::2] = 0
            conv.bias[::2] = 0
    x = torch.randn(3, 1, 8, 8)
    pruned, _, _ = prune_channels(model, spec, spec.compress_plan.prune, (x,))
    assert pruned.c1.out_channels == pruned.c2.out_channels == 4
    assert pruned.fc.in_features == 4 * 64
    torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)


def test_the_model_output_is_never_cut():
    text = """
model seq {
  input x: float[16]
  fc1: linear(32)
  relu
  fc2: linear(10)
}
compress { prune = channels(0.5, on=[linear]) }
"""
    spec = _load(text)
    model = spec.build().eval()
    pruned, new_text, _ = prune_channels(model, spec, spec.compress_plan.prune,
                                         (torch.randn(2, 16),))
    assert pruned.fc1.out_features == 16 and pruned.fc2.out_features == 10
    assert "fc1: linear(16)" in new_text and "fc2: linear(10)" in new_text
