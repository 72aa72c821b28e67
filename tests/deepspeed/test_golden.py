"""Golden configs: tests/deepspeed/golden/NAME.json is the emitted config of cases.CASES[NAME].
Rewrite them with NNSPEC_UPDATE_GOLDEN=1 (or pytest --update-golden)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnspec.emit.deepspeed import check_keys, dumps, emit_deepspeed_config

from .cases import CASES

GOLDEN = Path(__file__).resolve().parent / "golden"


def emit(name: str) -> dict:
    c = CASES[name]
    return emit_deepspeed_config(c.train, c.parallel, c.world_size, total_steps=c.total_steps)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_config(name, update_golden):
    text = dumps(emit(name))
    path = GOLDEN / f"{name}.json"
    if update_golden or not path.exists():
        path.write_text(text, encoding="utf-8")
        if not update_golden:
            pytest.fail(f"{path.name} did not exist; written, check it and rerun")
    assert text == path.read_text(encoding="utf-8"), f"differs from {path}"


def test_no_stale_goldens():
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(CASES)


def test_enough_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("name", sorted(CASES))
def test_deterministic_and_sorted(name):
    a, b = emit(name), emit(name)
    assert a == b and dumps(a) == dumps(b)

    def keys_sorted(d):
        return list(d) == sorted(d) and all(keys_sorted(v) for v in d.values()
                                            if isinstance(v, dict))
    assert keys_sorted(a)
    assert json.loads(dumps(a)) == a


@pytest.mark.parametrize("name", sorted(CASES))
def test_only_known_keys(name):
    assert check_keys(emit(name)) == []
