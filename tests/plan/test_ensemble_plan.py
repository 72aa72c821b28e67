"""`nnspec plan` of an ensemble: sequential training holds one member's training state at a time
plus the other members' weights; per_rank puts each member alone on its own GPU."""
import json

import pytest

import nnspec
from nnspec.plan import Cluster, Model, evaluate, load_profile
from nnspec.plan.ensemble import EnsemblePlanError, plan_ensemble
from nnspec.plan.search import spec_choice
from tests.test_golden import run_cli

PROFILE = load_profile("a100-80gb")
SPEC = """
model wide(num_classes = 10) {
  input x: float[256]
  fc1: linear(2048)
  relu
  fc2: linear(num_classes)
}

model narrow(num_classes = 10) {
  input x: float[256]
  fc: linear(num_classes)
}

train { batch_size = 64 }

ensemble {
  members = [wide, narrow, narrow]
  placement = PLACEMENT
}
"""


def _alone(member, cluster) -> int:
    model = Model(member.spec.ir, member.spec.settings.train, member.spec.settings.parallel)
    return evaluate(model, spec_choice(model, cluster)[0], cluster, PROFILE)[
        "per_gpu_bytes"]["total"]


def test_sequential_holds_one_members_training_and_the_others_weights():
    spec = nnspec.loads(SPEC.replace("PLACEMENT", "sequential"))
    cluster = Cluster(2, 1, 80 * 10 ** 9)
    plan = plan_ensemble(spec, cluster, PROFILE)
    params = [m.spec.summary()["params"] for m in spec.members]
    assert plan["placement"] == "sequential" and plan["params"] == sum(params)
    for i, (row, member) in enumerate(zip(plan["members"], spec.members)):
        assert row["training_bytes"] == _alone(member, cluster)
        assert row["other_members_bytes"] == 4 * (sum(params) - params[i])
        assert row["per_gpu_bytes"] == row["training_bytes"] + row["other_members_bytes"]
    assert plan["peak_per_gpu_bytes"] == max(r["per_gpu_bytes"] for r in plan["members"])
    assert plan["peak_member"] == "wide"  # the wide member's optimizer state dominates


def test_per_rank_puts_each_member_alone_on_one_gpu():
    spec = nnspec.loads(SPEC.replace("PLACEMENT", "auto"))
    plan = plan_ensemble(spec, Cluster(3, 1, 80 * 10 ** 9), PROFILE)  # auto: 3 GPUs, 3 members
    assert plan["placement"] == "per_rank"
    for row, member in zip(plan["members"], spec.members):
        assert row["other_members_bytes"] == 0
        assert row["per_gpu_bytes"] == _alone(member, Cluster(1, 1, 80 * 10 ** 9))
    with pytest.raises(EnsemblePlanError, match="3 members need 3 GPUs, not 2"):
        plan_ensemble(nnspec.loads(SPEC.replace("PLACEMENT", "per_rank")),
                      Cluster(2, 1, 80 * 10 ** 9), PROFILE)


def test_the_cli_prints_a_row_per_member_and_the_peak(tmp_path):
    path = tmp_path / "ens.nn"
    path.write_text(SPEC.replace("PLACEMENT", "sequential"), encoding="utf-8")
    code, out, err = run_cli("plan", str(path), "--gpus", "2")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["wide", "narrow", "narrow"]
    assert "peak per GPU" in out and "fits" in out
    code, out, _ = run_cli("plan", str(path), "--gpus", "2", "--json")
    assert code == 0 and json.loads(out)["placement"] == "sequential"
    code, _, err = run_cli("plan", str(path), "--gpus", "2", "--auto")
    assert code == 2 and err.startswith("nnspec: error: --auto") and "Traceback" not in err
