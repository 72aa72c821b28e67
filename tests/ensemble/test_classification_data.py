"""classification(...): sklearn's make_classification as a data set, a noisy task where an
ensemble pays; `check` refuses the arguments that `train` refuses, in the same words."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnspec
from nnspec.data.fit import DataProblem, Port, Want
from nnspec.data.meta import read_meta
from nnspec.lang.config import Call
from nnspec.lang.diagnostics import SpecError
from nnspec.train import DataError, load_data

MODEL = "model m(classes = 4) {{\n  input x: float[{features}]\n  fc: linear(classes)\n}}\n"


def summary(features: int = 20) -> dict:
    return nnspec.loads(MODEL.format(features=features)).summary()


def call(**kwargs) -> Call:
    return Call(name="classification", kwargs=kwargs)


def test_make_classification_split_standardized_and_seeded():
    from sklearn.datasets import make_classification
    args = dict(n_samples=300, n_features=20, n_informative=6, n_classes=4, flip_y=0.1)
    data = load_data(call(**args), summary(), split=0.8, seed=5)
    assert data.train.inputs[0].shape == (240, 20) and len(data.test) == 60
    assert data.classes == 4 and data.train.targets.dtype == torch.int64
    # the run's seed draws the data when random_state is left out
    x, y = make_classification(n_redundant=0, n_repeated=0, random_state=5, **args)
    order = np.random.default_rng(np.random.SeedSequence([5, 0])).permutation(300)
    assert torch.equal(data.train.targets, torch.from_numpy(y[order[:240]]))
    train_x = x[order[:240]]
    expected = (train_x - train_x.mean(0)) / train_x.std(0)
    np.testing.assert_allclose(data.train.inputs[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    fixed = load_data(call(random_state=5, **args), summary(), split=0.8, seed=5)
    assert torch.equal(fixed.train.inputs[0], data.train.inputs[0])
    other = load_data(call(**args), summary(), split=0.8, seed=6)
    assert not torch.equal(other.train.targets, data.train.targets)


BAD = [
    (dict(n_samples=1), "`n_samples` must be an integer of at least 2"),
    (dict(n_features=4, n_informative=6), "n_informative (6) exceeds n_features (4)"),
    (dict(n_classes=8, n_informative=2), "8 classes x 2 clusters need at least 4 informative"),
    (dict(flip_y=1.5), "`flip_y` must be a fraction from 0 to 1"),
    (dict(class_sep=0), "`class_sep` must be a positive number"),
    (dict(random_state=-1), "`random_state` must be a non-negative integer"),
    (dict(n_classes=2.5), "`n_classes` must be an integer of at least 2"),
    (dict(n_sample=10), "unexpected keyword argument 'n_sample'"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_check_and_train_refuse_bad_arguments_alike(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_data(call(**kwargs), summary(), split=0.8, seed=0)
    port = Port("x", (20,), "float")
    want = Want([port], Port("output", (4,), "float"), "class", 0.8, ".",
                "classification(...)")
    with pytest.raises(DataProblem) as problem:
        read_meta(call(**kwargs), want)
    assert message in problem.value.message and message in str(err.value)


def test_check_locates_a_bad_argument_and_a_misfit():
    text = MODEL.format(features=20) + "train {\n  data = classification(n_features=12)\n}\n"
    with pytest.raises(SpecError) as err:
        nnspec.loads(text, name="noisy.nn")
    rendered = err.value.render() if hasattr(err.value, "render") else str(err.value)
    assert "error[E0732]" in rendered and "noisy.nn:6:3" in rendered
    assert "float[12]" in rendered
    text = MODEL.format(features=20) + "train {\n  data = classification(n_classes=6)\n}\n"
    with pytest.raises(SpecError, match="6 classes, but the model's output has 4 units"):
        nnspec.loads(text)
    ok = MODEL.format(features=20) + "train {\n  data = classification(n_classes=4)\n}\n"
    nnspec.loads(ok)
