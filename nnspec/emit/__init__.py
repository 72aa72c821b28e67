"""Emitters: the only part of nnspec that knows PyTorch (and, later, DeepSpeed)."""
