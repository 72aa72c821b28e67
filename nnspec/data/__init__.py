"""What nnspec knows about data without loading it: a data set's samples, shapes and classes
(meta), how data must fit a model (fit), the check of a train section against its data (check),
and tensors read from a `torch.save` file without torch (torchfile)."""
