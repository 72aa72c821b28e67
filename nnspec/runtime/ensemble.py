"""The module an `ensemble` section builds: its members side by side, combined in one forward.

Like every runtime helper, the class uses only torch, nn, F and math, so model.py can carry a
copy of it and need nothing but PyTorch.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Ensemble(nn.Module):
    """Members that see the same inputs, and one output that combines theirs.

    combine: `mean_probs` the log of the mean of the members' softmax over the last dimension,
    `mean_logits` the mean of their outputs, `vote` for each class how many members put it
    first (argmax, ties to the lowest class index), `learned` the log of the mean of their
    probabilities weighted by softmax(weights). The log keeps mean_probs and learned usable as
    logits: cross-entropy and argmax of the output are those of the combined probabilities.
    """

    def __init__(self, members, combine="mean_probs"):
        super().__init__()
        if combine not in ("mean_probs", "mean_logits", "vote", "learned"):
            raise ValueError(f"combine: no rule {combine!r}; use mean_probs, mean_logits, vote "
                             "or learned")
        self.members = nn.ModuleList(members)
        self.combine = combine
        # zeros: softmax gives every member the same weight until the weights are fitted
        weights = nn.Parameter(torch.zeros(len(self.members))) if combine == "learned" else None
        self.register_parameter("weights", weights)

    def member_outputs(self, *inputs):
        """Every member's output for the same inputs, in member order."""
        return [member(*inputs) for member in self.members]

    def forward(self, *inputs):
        return self.combine_outputs(self.member_outputs(*inputs))

    def combine_outputs(self, outputs):
        """The ensemble's output from its members' outputs (each (B, ..., classes))."""
        stacked = torch.stack(outputs)  # (M, B, ..., C)
        if self.combine == "mean_logits":
            return stacked.mean(0)
        if self.combine == "vote":
            first = stacked.argmax(-1)  # argmax keeps the lowest index among equal values
            return F.one_hot(first, stacked.shape[-1]).sum(0).to(stacked.dtype)
        log_probs = F.log_softmax(stacked, dim=-1)
        if self.combine == "learned":
            log_weights = F.log_softmax(self.weights, dim=0).to(stacked.dtype)
            shape = (-1,) + (1,) * (stacked.dim() - 1)
            return torch.logsumexp(log_probs + log_weights.view(shape), dim=0)
        # log(mean(p)) = logsumexp(log p) - log M, without leaving log space
        return torch.logsumexp(log_probs, dim=0) - math.log(len(outputs))
