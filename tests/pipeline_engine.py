"""What DeepSpeed's PipelineEngine does at stage boundaries, in one process, for tests.

The engine sends a stage's outputs (a tensor or a tuple) to the next stage, which receives
copies: `clone().detach()`, float ones made to require grad, integer and bool ones not. After the
last stage's backward, each stage sends back the gradient of every float tensor it received
(asserting that there is one, and none for the others), and the stage before runs `backward` on
each float tensor it sent with that gradient (deepspeed/runtime/pipe/engine.py:
_exec_recv_activations, _exec_send_grads, _exec_backward_pass). Running a partition's layers this
way shows, without a process group, that a boundary's tensors cross and the gradients flow back.
"""
from __future__ import annotations

import torch

from nnspec.emit.module import load_module
from nnspec.train.pipeline_module import stage_classes


class NoGradient(AssertionError):
    """A float tensor of a boundary that the later stages do not differentiate through (read for
    its shape only, say): DeepSpeed's engine asserts that it has a gradient to send back."""


def as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def received(live):
    """The copies the next stage computes on."""
    out = []
    for t in as_tuple(live):
        t = t.clone().detach()
        t.requires_grad = t.is_floating_point()
        out.append(t)
    return tuple(out) if isinstance(live, tuple) else out[0]


def run_stages(part, classes, model, inputs: list, loss):
    """The model's outputs and its loss's backward pass, stage by stage at `part.bounds`, with
    pipeline layers of `classes` (the emitted ones, or `stage_classes` of them as training uses).

    Returns:
        (outputs, [what each stage boundary carried])
    """
    layers = [cls(model) for cls in classes]
    live = tuple(inputs) if len(inputs) > 1 else inputs[0]
    got_in, sent = [], []
    for s in range(part.stages):
        if s:
            live = received(live)
            got_in.append(live)
        for layer in layers[part.bounds[s]:part.bounds[s + 1]]:
            live = layer(live)
        if s + 1 < part.stages:
            sent.append(live)
    total = loss(live)
    if not total.requires_grad:  # no weight reaches the outputs: nothing to train
        return live, sent
    total.backward()
    for s in reversed(range(part.stages - 1)):
        grads = []
        for t in as_tuple(got_in[s]):
            if t.is_floating_point():
                if t.grad is None:
                    raise NoGradient("a float tensor of a boundary got no gradient")
                grads.append(t.grad)
            else:
                assert t.grad is None
        outs = [t for t in as_tuple(sent[s]) if t.is_floating_point()]
        assert len(outs) == len(grads)
        for out, grad in zip(outs, grads):
            out.backward(gradient=grad, retain_graph=True)
    return live, sent


def float_loss(out) -> torch.Tensor:
    """A loss that reaches every float output, weighted so that no gradient is uniform."""
    total = torch.zeros(())
    for i, t in enumerate(as_tuple(out)):
        if t.is_floating_point():
            w = torch.linspace(-1, 1, t.numel(), dtype=t.dtype).reshape(t.shape)
            total = total + (t * w * (i + 1)).sum()
    return total


def check_against_model(spec, part, inputs: list, seed: int = 0) -> list:
    """Run the model whole and as the pipeline `part`, from the same weights; assert equal
    outputs and equal gradients of every parameter. Returns what the boundaries carried."""
    generated = load_module(spec.pipeline_source())
    torch.manual_seed(seed)
    whole = generated.Model().double().eval()
    staged = generated.Model().double().eval()
    staged.load_state_dict(whole.state_dict())
    want = whole(*inputs)
    total = float_loss(want)
    if torch.is_tensor(total) and total.requires_grad:
        total.backward()
    got, sent = run_stages(part, stage_classes(part, generated.LAYERS), staged, list(inputs),
                           float_loss)
    for a, b in zip(as_tuple(want), as_tuple(got)):
        assert torch.equal(a, b)
    for (name, p), q in zip(whole.named_parameters(), staged.parameters()):
        if p.grad is None:
            assert q.grad is None, name
        else:
            assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12), name
    return sent
