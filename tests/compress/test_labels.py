"""Few labels and a transfer set (nnspec.compress.labels): which samples are labelled, the batches
the distilled student and the student alone see, and the teacher's outputs computed once."""
import numpy as np
import torch
from torch import nn

from nnspec.compress.checked import Distill
from nnspec.compress.labels import StudentBatches, Taught, choose_labelled, split_for, \
    teacher_outputs
from nnspec.train.data import Split


def _split(n=200, classes=10):
    g = torch.Generator().manual_seed(0)
    return Split((torch.randn(n, 4, generator=g),), torch.arange(n) % classes)


def _distill(**kw):
    return Distill(teacher=None, weights=None, **kw)


def test_a_fraction_of_each_class_is_labelled():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 3)
    idx = choose_labelled(y, 0.1, seed=0)
    assert sorted(np.bincount(y[idx].numpy()).tolist()) == [1, 3, 5]   # at least one per class
    assert len(set(idx.tolist())) == len(idx)
    assert (choose_labelled(y, 0.1, seed=0) == idx).all()         # the seed decides the draw
    assert not np.array_equal(choose_labelled(y, 0.1, seed=1), idx)
    assert len(choose_labelled(y, 1.0, seed=3)) == len(y)


def test_regression_targets_get_a_random_fraction():
    idx = choose_labelled(torch.randn(100), 0.2, seed=0)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20


def test_the_transfer_set_is_the_rest_of_the_training_inputs():
    split = _split()
    labelled, unlabelled = split_for(_distill(labels=0.1, transfer="unlabelled"), split, 0)
    assert len(labelled) == 20 and len(unlabelled) == 180
    assert sorted(labelled.tolist() + unlabelled.tolist()) == list(range(200))
    labelled2, none = split_for(_distill(labels=0.1), split, 0)
    assert (labelled2 == labelled).all() and len(none) == 0


def test_both_students_see_the_same_labels_in_the_same_order():
    split = _split()
    labelled, unlabelled = split_for(_distill(labels=0.1, transfer="unlabelled"), split, 4)
    with_transfer = StudentBatches(split, labelled, unlabelled, size=16, seed=4)
    alone = StudentBatches(split, labelled, labelled[:0], size=16, seed=4)
    assert with_transfer.steps_per_epoch == alone.steps_per_epoch == 13   # as for all 200
    a, b = list(with_transfer.epoch()), list(alone.epoch())
    assert len(a) == len(b) == 13
    for (xa, ya), (xb, yb) in zip(a, b):
        assert ya.shape == yb.shape == (16,) and torch.equal(ya, yb)
        assert torch.equal(xa[0][:16], xb[0]) and xa[0].shape[0] == 32
        # the unlabelled half carries no label the student could use
        rows = {tuple(r.tolist()) for r in split.inputs[0][torch.from_numpy(labelled)]}
        assert not any(tuple(r.tolist()) in rows for r in xa[0][16:])
    seen = torch.cat([y for _, y in b])
    assert set(seen.tolist()) == set(range(10))   # every class is among the labels


def test_the_teacher_is_run_once_and_its_outputs_ride_with_the_batch():
    split = _split()
    calls = []
    teacher = nn.Linear(4, 10)
    teacher.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    cached = teacher_outputs(teacher, _distill(labels=0.1, transfer="unlabelled"), split)
    assert cached.shape == (200, 10) and sum(calls) == 1 + 200
    labelled, unlabelled = split_for(_distill(labels=0.1, transfer="unlabelled"), split, 0)
    (x, y), *_ = StudentBatches(split, labelled, unlabelled, 8, 0, cached).epoch()
    assert isinstance(y, Taught) and y.labels.shape == (8,)
    with torch.no_grad():
        torch.testing.assert_close(y.teacher, teacher(x[0]))
    # mixup pairs and feature taps need the teacher's forward on each batch
    assert teacher_outputs(teacher, _distill(mixup=0.4), split) is None
    assert teacher_outputs(teacher, _distill(features=(("a", "b"),)), split) is None


def test_the_loss_is_the_same_with_cached_and_live_teacher_outputs():
    """KL over every input (labelled and transfer), cross-entropy over the labelled ones only."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from nnspec.compress.distill import DistillLoss

    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 10).eval(), nn.Linear(4, 10)
    d = _distill(temperature=3.0, alpha=0.25, labels=0.1, transfer="unlabelled")
    loss = DistillLoss(teacher, student, d, SimpleNamespace(objective=SimpleNamespace(
        loss=F.cross_entropy)))
    x, y = torch.randn(12, 4), torch.randint(0, 10, (5,))
    with torch.no_grad():
        t = teacher(x)
    live, cached = loss(student, (x,), y), loss(student, (x,), Taught(y, t))
    s = student(x)
    soft = F.kl_div(F.log_softmax(s / 3, -1), F.softmax(t / 3, -1), reduction="batchmean") * 9
    want = 0.25 * soft + 0.75 * F.cross_entropy(s[:5], y)
    torch.testing.assert_close(live, want)
    torch.testing.assert_close(cached, want)


def test_feature_matching_covers_the_transfer_half_too():
    """features= stays an option with a transfer set: the teacher then runs on each batch and
    the projection learns from every input, labelled or not."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from nnspec.compress.distill import DistillLoss

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 10)).eval()
    student = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 10))
    d = _distill(temperature=1.0, alpha=0.5, features=(("0", "0"),), feature_weight=2.0,
                 labels=0.1, transfer="unlabelled")
    assert teacher_outputs(teacher, d, _split()) is None
    session = SimpleNamespace(objective=SimpleNamespace(loss=F.cross_entropy),
                              data=SimpleNamespace(train=_split()))
    loss = DistillLoss(teacher, student, d, session)
    x, y = torch.randn(12, 4), torch.randint(0, 10, (4,))
    got = loss(student, (x,), y)
    with torch.no_grad():
        t_feat, t = teacher[0](x), teacher(x)
    s_feat = student[0](x)
    s = student[1](s_feat)
    want = 0.5 * F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean") \
        + 0.5 * F.cross_entropy(s[:4], y) + 2.0 * F.mse_loss(loss.proj["0"](s_feat), t_feat)
    torch.testing.assert_close(got, want)
    got.backward()
    assert loss.proj["0"].weight.grad.abs().sum() > 0
    loss.close()
