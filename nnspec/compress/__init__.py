"""Compression: the `compress` section's directives, checked at compile time (directives), and
their runtime: pruning (prune, structured, writeback), quantization (quantize), distillation
(distill), short training runs (finetune), measurement (report), chained by pipeline.compress.

    import nnspec
    from nnspec.compress import compress
    report = compress(nnspec.load("specs/digits_int8.nn"), "out/int8")

This package's __init__ imports nothing heavy: the compiler imports `directives` on every load.
"""


def __getattr__(name):
    if name == "compress":
        from nnspec.compress.command import compress
        return compress
    if name == "CompressError":
        from nnspec.compress.errors import CompressError
        return CompressError
    raise AttributeError(name)


__all__ = ["compress", "CompressError"]
