"""Train a spec: data, one-process loop, DeepSpeed under the runner, checkpoints, metrics.

    import nnspec, nnspec.train
    from nnspec.lang.config import TrainSpec, ParallelSpec, Call
    spec = nnspec.load("specs/lenet5.nn")
    final = nnspec.train.run(spec, TrainSpec(epochs=30, optimizer=Call(name="adamw",
                             kwargs={"lr": 3e-3})), ParallelSpec())

Without an output folder a run claims its own, runs/<model>/version_N (runs.py); a folder that
already holds files is refused unless the run resumes the run recorded there or may overwrite.

The same call trains with DeepSpeed on every rank when a launcher started the process:
`deepspeed --num_accelerators 2 --module nnspec.train specs/lenet5.nn --out out/lenet5`.
"""
from nnspec.train.data import Data, Split, load_data
from nnspec.train.distributed import launched
from nnspec.train.errors import DataError, TrainError
from nnspec.train.entry import run
from nnspec.train.metrics import build_objective

__all__ = ["run", "load_data", "Data", "Split", "DataError", "TrainError", "build_objective",
           "launched"]
