"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened outputs,
and optionally matches the teacher's intermediate features through a learned projection. With
few labels, the batches also carry a transfer set of unlabelled inputs (labels.py) that only the
teacher's outputs label.

The teacher is another .nn spec plus a weights file. When the weights file does not exist yet,
the teacher is trained first with its own spec's train section (nnspec.train.run) and its weights
are saved there, so a fresh checkout can run a distillation without downloading anything.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nnspec.compress.checked import Distill
from nnspec.compress.errors import CompressError, load_weights
from nnspec.compress.finetune import Session, _first
from nnspec.compress.labels import Taught


def teacher_model(d: Distill, log=print) -> tuple[nn.Module, object]:
    """The teacher module with its weights (trained and saved first when the file is missing)."""
    from nnspec.compile import load
    from nnspec.lang.diagnostics import SpecError

    # a link named .nn must lead to a .nn file: a diagnostic may quote the teacher's lines
    if not d.teacher.is_file() or d.teacher.resolve().suffix != ".nn":
        raise CompressError(f"no such teacher spec: {d.teacher}",
                            "distill = teacher(\"path/to/teacher.nn\", weights=...) is relative to "
                            "the spec")
    try:
        spec = load(d.teacher)
    except SpecError as err:
        raise CompressError(f"the teacher spec {d.teacher} has errors:\n{err.render()}") from None
    model = spec.build()
    if not d.weights.exists():
        log(f"training the teacher {d.teacher} (no weights at {d.weights})")
        from nnspec.train import run

        with tempfile.TemporaryDirectory() as tmp:
            run(spec, spec.settings.train, spec.settings.parallel, tmp, progress=False)
            d.weights.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "model.safetensors", d.weights)
    load_weights(model, d.weights)
    return model.eval(), spec


class FeatureTaps:
    """Records the outputs of named layers during forward passes (forward hooks)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = [model.get_submodule(n).register_forward_hook(self._hook(n))
                        for n in names]

    def _hook(self, name):
        def hook(_mod, _inputs, output):
            self.out[name] = _first(output)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


class DistillLoss:
    """alpha * T^2 * KL(teacher_T || student_T) over every input of the batch + (1 - alpha) *
    task loss over its labelled inputs
    (+ feature_weight * MSE(projection(student feature), teacher feature) per pair)."""

    def __init__(self, teacher: nn.Module, student: nn.Module, d: Distill, session: Session):
        self.teacher, self.d, self.session = teacher, d, session
        pairs = list(d.features)
        self.s_taps = FeatureTaps(student, [s for s, _ in pairs])
        self.t_taps = FeatureTaps(teacher, [t for _, t in pairs])
        self.proj = nn.ModuleDict()
        self.beta = torch.distributions.Beta(d.mixup or 1.0, d.mixup or 1.0)
        if pairs:  # one forward to learn the feature sizes
            inputs, _ = session.data.train.take(torch.arange(2))
            with torch.no_grad():
                student.eval()(*inputs)
                teacher(*inputs)
            for s, t in pairs:
                a = self.s_taps.out[s].flatten(1).shape[1]
                b = self.t_taps.out[t].flatten(1).shape[1]
                self.proj[s.replace(".", "_")] = nn.Linear(a, b)

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        """Mixup (Zhang et al. 2018) of the batch with a shuffled copy of itself; the teacher's
        outputs on these inputs are the extra targets (Beyer et al. 2022: patient, consistent
        teachers)."""
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        lam = self.beta.sample(shape).to(x.dtype)
        return lam * x + (1 - lam) * x[torch.randperm(x.shape[0])]

    def parameters(self) -> list[nn.Parameter]:
        return list(self.proj.parameters())

    def __call__(self, student: nn.Module, inputs: tuple, y) -> torch.Tensor:
        """The loss of one batch; `y` holds the targets of its first len(y) inputs (the rest are
        the transfer set's unlabelled inputs), or is a Taught that brings the teacher's outputs."""
        t_out = None
        if isinstance(y, Taught):
            y, t_out = y.labels, y.teacher
        n = y.shape[0]
        if self.d.mixup:   # the transfer set: the batch plus mixed pairs only the teacher labels
            inputs = tuple(torch.cat([x, self._mix(x)]) if x.is_floating_point() else
                           torch.cat([x, x]) for x in inputs)
        if t_out is None:
            with torch.no_grad():
                t_out = _first(self.teacher(*inputs)).float()
        s_all = _first(student(*inputs)).float()
        s_out = s_all[:n]
        T, alpha = self.d.temperature, self.d.alpha
        soft = F.kl_div(F.log_softmax(s_all / T, -1), F.softmax(t_out / T, -1),
                        reduction="batchmean") * T * T
        loss = alpha * soft + (1 - alpha) * self.session.objective.loss(s_out, y)
        for s, t in self.d.features:
            feat = self.proj[s.replace(".", "_")](self.s_taps.out[s].flatten(1))
            loss = loss + self.d.feature_weight * F.mse_loss(feat, self.t_taps.out[t].flatten(1))
        return loss

    def close(self):
        self.s_taps.close()
        self.t_taps.close()
