"""Shared pieces of the weights tests: a tiny GPT-2 (transformers') and the same sizes for
specs/gpt2_small.nn, and a command-line runner."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nnspec
from nnspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
SIZES = dict(vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2)
SETS = [f"--set={k}={v}" for k, v in {**SIZES, "seq": 8}.items()]


def gpt2_spec():
    return nnspec.load(ROOT / "specs" / "gpt2_small.nn", **SIZES, seq=8)


@pytest.fixture
def reference():
    """transformers' GPT2LMHeadModel at tiny sizes, random weights, eval mode."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()  # its warning about GPT-2's token ids beyond a tiny vocabulary
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**SIZES)).eval()


def tokens() -> torch.Tensor:
    return torch.randint(0, SIZES["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(1))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
