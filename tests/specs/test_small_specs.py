"""Small specs build, run forward and backward, and their summaries agree with the modules."""
import pytest
import torch

import nnspec

SPECS = {
    "lenet5": lambda: (torch.randn(4, 1, 8, 8),),
    "digits_mlp": lambda: (torch.randn(4, 1, 8, 8),),
    "digits_mobilenet": lambda: (torch.randn(4, 1, 8, 8),),
    "char_lstm": lambda: (torch.randint(0, 96, (4, 64)),),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_backward(name, in_root):
    torch.manual_seed(0)
    spec = nnspec.load(f"specs/{name}.nn")
    model = spec.build().train()
    inputs = SPECS[name]()
    out = model(*inputs)
    want = [v["shape"] for v in spec.summary()["outputs"]]
    assert [list(out.shape[1:])] == want
    loss = out.float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert spec.summary()["params"] == sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if n in model.state_dict())
    assert spec.summary()["buffers"] == buffers


def test_digits_models_classify_ten_classes(in_root):
    for name in ("lenet5", "digits_mlp", "digits_mobilenet"):
        spec = nnspec.load(f"specs/{name}.nn")
        assert spec.summary()["outputs"] == [{"shape": [10], "dtype": "float"}]


def test_char_lstm_predicts_every_position(in_root):
    spec = nnspec.load("specs/char_lstm.nn", seq=20, vocab=50)
    out = spec.build()(torch.randint(0, 50, (2, 20)))
    assert out.shape == (2, 20, 50)


def test_mobilenet_style_net_is_cheaper_than_full_convolutions(in_root):
    """The depthwise-separable net vs the same widths with full 3x3 convolutions."""
    separable = nnspec.load("specs/digits_mobilenet.nn").summary()
    text = (in_root / "specs/digits_mobilenet.nn").read_text().replace(
        "separable_conv2d(out_channels, 3,", "conv2d(out_channels, 3,")
    full = nnspec.loads(text, name="full.nn").summary()
    assert separable["flops"] * 3 < full["flops"]
    assert separable["params"] * 3 < full["params"]
