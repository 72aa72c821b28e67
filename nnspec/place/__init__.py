"""Placement: where a checked model's parts run. The pipeline partition (which layers form each
stage) and activation checkpointing (which modules recompute their activations)."""
