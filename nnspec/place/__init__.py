"""Placement: where a checked model's parts run. The pipeline partition (which layers form each
stage), activation checkpointing (which modules recompute their activations) and the
tensor-parallel split (which layers each rank holds a slice of: tensor.py)."""
