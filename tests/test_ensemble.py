"""The ensemble section as a spec: its members (models and blocks with parameter values), the
module build() makes of them, and how that module combines its members' outputs (against a
float64 computation of each rule)."""
import pytest
import torch

import nnspec
from nnspec.runtime.ensemble import Ensemble

SPEC = """
model mlp(num_classes = 10, hidden = 32) {
  input x: float[1, 8, 8]
  flatten
  fc1: linear(hidden)
  relu
  fc2: linear(num_classes)
}

block Cnn(width, num_classes = 10) {
  in x
  conv: conv2d(width, 3, padding=1)
  relu
  flatten
  fc: linear(num_classes)
}

train { seed = 7 }

ensemble {
  members = [mlp, mlp(hidden=16), Cnn(4)]
  combine = mean_probs
}
"""


def test_members_are_the_named_models_and_blocks_with_their_values():
    spec = nnspec.loads(SPEC)
    assert [(m.index, m.name, m.seed) for m in spec.members] == [
        (0, "mlp", 7), (1, "mlp(hidden=16)", 8), (2, "Cnn(4)", 9)]
    assert [m.spec.ir.signature for m in spec.members] == [
        "mlp(num_classes=10, hidden=32)", "mlp(hidden=16, num_classes=10)",
        "Cnn(width=4, num_classes=10)"]
    block = spec.members[2].spec
    assert [v.type.shape for v in block.ir.inputs] == [(1, 8, 8)]  # the model's inputs
    assert all(not m.spec.members and m.spec.settings.train.seed == m.seed for m in spec.members)


def test_n_copies_take_the_models_parameter_values():
    spec = nnspec.loads(SPEC.replace("[mlp, mlp(hidden=16), Cnn(4)]", "3"), num_classes=5)
    assert [m.name for m in spec.members] == ["mlp"] * 3
    assert {m.spec.ir.signature for m in spec.members} == {"mlp(num_classes=5, hidden=32)"}


def test_a_named_member_inherits_the_callers_values_it_does_not_set():
    spec = nnspec.loads(SPEC, num_classes=4)
    assert [m.spec.ir.outputs[0].type.shape for m in spec.members] == [(4,)] * 3


def test_build_seeds_member_i_with_train_seed_plus_i():
    spec = nnspec.loads(SPEC)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    model = spec.build()
    assert torch.equal(torch.random.get_rng_state(), before)  # build leaves the RNG alone
    assert isinstance(model, Ensemble) and len(model.members) == 3
    for i, member in enumerate(spec.members):
        torch.manual_seed(member.seed)
        alone = member.spec.build().state_dict()
        inside = model.members[i].state_dict()
        assert alone.keys() == inside.keys()
        assert all(torch.equal(alone[k], inside[k]) for k in alone)
    assert "weights" not in model.state_dict()  # only `learned` has weights


def test_build_on_meta_allocates_nothing():
    model = nnspec.loads(SPEC.replace("mean_probs", "learned")).build(device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert model.weights.shape == (3,)


def _outputs(seed=0, members=3, batch=5, classes=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, classes, generator=g, dtype=torch.float64) for _ in range(members)]


def test_mean_probs_is_the_log_of_the_mean_probability():
    outs = _outputs()
    got = Ensemble([torch.nn.Identity()] * 3, "mean_probs").combine_outputs(outs)
    want = torch.log(sum(o.softmax(-1) for o in outs) / 3)
    torch.testing.assert_close(got, want)


def test_mean_logits_is_the_mean():
    outs = _outputs()
    got = Ensemble([torch.nn.Identity()] * 3, "mean_logits").combine_outputs(outs)
    torch.testing.assert_close(got, sum(outs) / 3)


def test_learned_weights_start_equal_and_weight_the_probabilities():
    outs = _outputs()
    ens = Ensemble([torch.nn.Identity()] * 3, "learned").double()
    torch.testing.assert_close(ens.combine_outputs(outs),
                               torch.log(sum(o.softmax(-1) for o in outs) / 3))
    with torch.no_grad():
        ens.weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    w = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).softmax(0)
    want = torch.log(sum(wi * o.softmax(-1) for wi, o in zip(w, outs)))
    torch.testing.assert_close(ens.combine_outputs(outs), want)


def test_vote_counts_each_members_first_class_and_ties_go_low():
    outs = [torch.tensor([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0]]),
            torch.tensor([[3.0, 2.0, 1.0], [0.0, 5.0, 5.0]])]
    got = Ensemble([torch.nn.Identity()] * 2, "vote").combine_outputs(outs)
    # row 1: member 0 ties classes 0 and 1 (-> 0); member 1 ties 1 and 2 (-> 1)
    assert torch.equal(got, torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]))
    assert got.argmax(-1).tolist() == [0, 0]  # a tie in the count goes to the lowest class


def test_forward_runs_every_member_on_the_same_inputs():
    spec = nnspec.loads(SPEC)
    model = spec.build().eval()
    x = torch.randn(3, 1, 8, 8)
    outs = model.member_outputs(x)
    assert [o.shape for o in outs] == [(3, 10)] * 3
    torch.testing.assert_close(model(x), torch.log(sum(o.softmax(-1) for o in outs) / 3))


def test_an_unknown_combine_rule_is_refused():
    with pytest.raises(ValueError, match="mean_probs"):
        Ensemble([torch.nn.Identity()], "median")
