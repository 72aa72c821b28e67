"""The compress section as checked data: defaults, layer selection, one or many directives,
overrides. The located diagnostics are golden files (tests/golden/invalid/compress_*)."""
import pytest

import nnspec
from nnspec.compress.directives import model_layers
from nnspec.lang.diagnostics import SpecError

NET = """
model net {
  input x: float[1, 8, 8]
  conv1: conv2d(8, 3, padding=1)
  relu
  layer1: [conv2d(8, 3, padding=1), relu, conv2d(8, 3, padding=1)]
  flatten
  fc1: linear(32)
  fc2: linear(10)
}
"""


def plan(section: str, **kw):
    return nnspec.loads(NET + f"compress {{\n{section}\n}}\n", name="net.nn", **kw).compress_plan


def test_no_section_means_no_plan():
    assert nnspec.loads(NET, name="net.nn").compress_plan is None


def test_layers_have_state_dict_names():
    spec = nnspec.loads(NET, name="net.nn")
    layers = model_layers(spec.ir)
    assert [la.name for la in layers if la.kind in ("conv2d", "linear")] == \
        ["conv1", "layer1.0", "layer1.2", "fc1", "fc2"]
    assert [la.name for la in layers if la.kind == "relu"] == ["layer1.1"]
    assert set(spec.build().state_dict()) >= {f"{n}.weight" for n in
                                              ["conv1", "layer1.0", "layer1.2", "fc1", "fc2"]}


def test_kinds_patterns_and_skips_select_layers():
    p = plan('prune = magnitude(0.5, on=[conv2d, "fc*"], skip=["fc2", "layer1.2"])')
    assert p.prune[0].layers == ("conv1", "layer1.0", "fc1")
    p = plan('prune = magnitude(0.5)')   # default: every layer with a weight matrix
    assert p.prune[0].layers == ("conv1", "layer1.0", "layer1.2", "fc1", "fc2")


def test_one_directive_or_a_list():
    p = plan('prune = [channels(0.5, on=["layer1.*"]), magnitude(0.8, on=[linear], scope=global,'
             ' schedule=cubic(start=0, end=100, every=5))]\n'
             'quantize = [static(int8, calibrate=4, skip=["fc2"]), cast(bf16, on=["fc2"])]\n'
             'order = [prune, quantize]\nfinetune_epochs = 2')
    assert [d.method for d in p.prune] == ["channels", "magnitude"]
    assert p.prune[1].schedule == ("cubic", 0, 100, 5) and p.prune[1].scope == "global"
    assert [(q.method, q.dtype) for q in p.quantize] == [("static", "int8"), ("cast", "bf16")]
    assert p.quantize[0].layers == ("conv1", "layer1.0", "layer1.2", "fc1")
    assert p.quantize[0].calibrate == 4
    assert p.order == ("prune", "quantize") and p.settings.finetune_epochs == 2


def test_nm_and_distill_arguments(tmp_path):
    p = plan('prune = nm(2, 4, on=[linear])\n'
             'distill = teacher("t.nn", weights="t.safetensors", temperature=2, alpha=0.5, '
             'features=[["fc1", "fc1"]], seeds=3)')
    assert p.prune[0].n == 2 and p.prune[0].m == 4 and p.prune[0].amount == 0.5
    d = p.distill
    assert (d.temperature, d.alpha, d.seeds, d.features) == (2.0, 0.5, 3, (("fc1", "fc1"),))
    assert d.teacher.name == "t.nn"
    assert (d.labels, d.transfer) == (1.0, "labelled")   # the default: every label, as before


def test_few_labels_and_a_transfer_set():
    d = plan('distill = teacher("t.nn", weights="t.safetensors", labels=0.1, '
             'transfer=unlabelled)').distill
    assert (d.labels, d.transfer) == (0.1, "unlabelled")
    d = plan('distill = teacher("t.nn", weights="w")',
             sets={"compress.distill.labels": 0.25}).distill
    assert (d.labels, d.transfer) == (0.25, "labelled")


def test_overrides_reach_directive_arguments():
    p = plan('quantize = static(int8)', sets={"compress.quantize.calibrate": 2,
                                                  "compress.finetune_epochs": 3})
    assert p.quantize[0].calibrate == 2 and p.settings.finetune_epochs == 3


@pytest.mark.parametrize("section, message", [
    ("prune = magnitude(1.5)", "invalid `magnitude` argument `amount`"),
    ("prune = magnitude(0.5, scope=everywhere)", "invalid `magnitude` argument `scope`"),
    ("quantize = static(int8, on=[lstm])", "matches no layer"),
    ("quantize = weight_only(int2)", "invalid `weight_only` argument `dtype`"),
    ("quantize = [dynamic(int8), static(int8)]", "more than one int8 quantization"),
    ("distill = teacher(\"t.nn\")", "`teacher` needs `weights`"),
    ("distill = teacher(\"t.nn\", weights=\"w\", features=[[\"nope\", \"fc1\"]])",
     "not a layer of the student"),
    ("distill = teacher(\"t.nn\", weights=\"w\", labels=0)",
     "invalid `teacher` argument `labels`"),
    ("distill = teacher(\"t.nn\", weights=\"w\", labels=1.5)",
     "invalid `teacher` argument `labels`"),
    ("distill = teacher(\"t.nn\", weights=\"w\", labels=0.1, transfer=teacher)",
     "invalid `teacher` argument `transfer`"),
    ("distill = teacher(\"t.nn\", weights=\"w\", transfer=unlabelled)",
     "`transfer = unlabelled` needs `labels` below 1"),
    ("order = [prune, prune]", "names a step twice"),
    ("order = [shrink]", "invalid `compress.order`"),
])
def test_bad_directives_are_located_errors(section, message):
    with pytest.raises(SpecError) as err:
        plan(section)
    assert message in str(err.value)
    assert "net.nn:" in str(err.value)
