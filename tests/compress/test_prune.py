"""Pruning masks, the cubic schedule, N:M groups, and the sparse on-disk form."""
import pytest
import torch
from torch import nn

from nnspec.compress.directives import Prune, Target
from nnspec.compress.prune import Pruner, compute_masks, cubic_sparsity, nm_mask
from nnspec.compress.report import pack_state, unpack_state


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def _directive(method="magnitude", amount=0.75, scope="layer", schedule=("oneshot",), **kw):
    return Prune(method, amount, Target(("linear",)), scope, schedule, layers=("0", "2"), **kw)


def test_cubic_schedule_matches_zhu_and_gupta():
    assert cubic_sparsity(0.9, 0, 0, 100) == 0.0
    assert cubic_sparsity(0.9, 100, 0, 100) == pytest.approx(0.9)
    assert cubic_sparsity(0.9, 200, 0, 100) == pytest.approx(0.9)
    assert cubic_sparsity(0.9, 50, 0, 100) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert cubic_sparsity(0.9, 10, 20, 100) == 0.0


def test_layer_scope_prunes_each_layer_by_magnitude():
    net = _net()
    pruner = Pruner(net, (_directive(),))
    before = net[0].weight.detach().clone()
    pruner.start()
    for layer in (net[0], net[2]):
        assert (layer.weight == 0).float().mean().item() == pytest.approx(0.75, abs=0.01)
    kept = before[net[0].weight != 0].abs().min()
    dropped = before[net[0].weight == 0].abs().max()
    assert kept >= dropped


def test_global_scope_uses_one_threshold():
    net = _net()
    with torch.no_grad():
        net[2].weight.add_(10 * net[2].weight.sign())   # all larger than the first layer's
    pruner = Pruner(net, (_directive(scope="global", amount=0.5),))
    pruner.start()
    assert (net[2].weight != 0).all()
    assert pruner.sparsity() == pytest.approx(0.5, abs=0.01)


def test_random_pruning_hits_the_amount():
    net = _net()
    Pruner(net, (_directive("random", 0.6),), seed=1).start()
    assert (net[0].weight == 0).float().mean().item() == pytest.approx(0.6, abs=0.01)


def test_gradual_pruning_rises_along_the_schedule_and_masks_stay():
    net = _net()
    pruner = Pruner(net, (_directive(schedule=("cubic", 0, 10, 1), amount=0.8),))
    pruner.start()
    assert pruner.sparsity() == 0.0
    pruner.update(5)
    assert pruner.sparsity() == pytest.approx(0.8 * (1 - 0.5 ** 3), abs=0.01)
    with torch.no_grad():
        net[0].weight.add_(1.0)   # an optimizer step revives pruned weights...
    pruner.update(6)              # ...the next update zeroes them again
    pruner.update(10)
    assert pruner.sparsity() == pytest.approx(0.8, abs=0.01)


def test_two_four_sparsity_keeps_the_two_largest_of_every_four():
    w = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.1, 0.2, -0.3, 0.4]])
    mask = nm_mask(w, 2, 4)
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]
    conv = torch.randn(6, 4, 3, 3)
    m = nm_mask(conv, 2, 4).reshape(6, -1, 4)
    assert (m.sum(-1) == 2).all()


def test_nm_directive_masks_through_the_pruner():
    net = _net()
    d = Prune("nm", 0.5, Target(("linear",)), n=2, m=4, layers=("0", "2"))
    masks = compute_masks(d, {"w": net[0].weight}, 0.5)
    assert masks["w"].float().mean().item() == 0.5


def test_sparse_packing_round_trips_and_is_smaller():
    w = torch.randn(64, 64)
    w[torch.rand(64, 64) < 0.9] = 0
    state = {"w": w, "b": torch.randn(64), "dense": torch.randn(32, 32)}
    packed = pack_state(state)
    assert isinstance(packed["w"], dict) and torch.is_tensor(packed["dense"])
    back = unpack_state(packed)
    assert all(torch.equal(back[k], state[k]) for k in state)
    assert packed["w"]["values"].numel() + packed["w"]["mask"].numel() / 4 < w.numel() / 4
