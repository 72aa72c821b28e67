"""Shape plumbing: reshape, permute, transpose, squeeze/unsqueeze, split/chunk, select/narrow,
mean/sum reductions, stack, pad and upsample. All but upsample are plain torch calls (no module).

Dims follow torch: dim 0 is the batch, which none of these may move, drop or split. Shapes given
as arguments (reshape) are per sample: the batch is left out.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from nnspec.layers.base import (ANY_DTYPE, Layer, ShapeError, T, fmt_shape, norm_dim, numel, py,
                                register, variant)
from nnspec.layers.tensor import FunctionalOnly, promote


def _dims(dim: Union[int, tuple[int, ...]], rank: int, what: str) -> list[int]:
    """Per-sample indices of one or several torch dims; refuses the batch and repeats."""
    dims = (dim,) if isinstance(dim, int) else dim
    out = [norm_dim(d, rank, what) for d in dims]
    if len(set(out)) != len(out):
        raise ShapeError(f"{what}: dims {dims} name the same dim twice")
    return out


@register
class Reshape(FunctionalOnly):
    """Reshape each sample to `shape` (batch excluded; one -1 is inferred from the rest)."""

    kind: ClassVar[str] = "reshape"
    torch_name: ClassVar[str] = "torch.reshape"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    shape: tuple[int, ...] = Field(description="per-sample shape, without the batch; one -1 allowed")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape.count(-1) > 1:
            raise ValueError(f"at most one -1 is allowed, got {shape}")
        if any(s < 1 and s != -1 for s in shape):
            raise ValueError(f"sizes must be positive (or one -1), got {shape}")
        return shape

    def _resolved(self, x: T) -> tuple[int, ...]:
        total = numel(x.shape)
        known = numel(tuple(s for s in self.shape if s != -1))
        if -1 in self.shape:
            if total % known:
                raise ShapeError(f"reshape: cannot reshape {fmt_shape(x.shape)} ({total} elements "
                                 f"per sample) to {fmt_shape(self.shape)}: {total} is not a "
                                 f"multiple of {known}")
            return tuple(total // known if s == -1 else s for s in self.shape)
        if known != total:
            raise ShapeError(f"reshape: cannot reshape {fmt_shape(x.shape)} ({total} elements per "
                             f"sample) to {fmt_shape(self.shape)} ({known} elements)",
                             "the shape leaves out the batch; use -1 for one dim to infer it")
        return self.shape

    def infer(self, ins):
        return T(self._resolved(ins[0]), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.reshape({args[0]}, {py((-1, *self._resolved(ins[0])))})"


@register
class Permute(FunctionalOnly):
    """Reorder dims; `dims` lists every dim including the batch, which must stay first (0)."""

    kind: ClassVar[str] = "permute"
    torch_name: ClassVar[str] = "torch.permute"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dims: tuple[int, ...] = Field(description="the new order of all dims, batch (0) first")

    def infer(self, ins):
        s = ins[0].shape
        full = len(s) + 1
        if len(self.dims) != full:
            raise ShapeError(f"permute: dims {self.dims} has {len(self.dims)} entries, but the "
                             f"input {fmt_shape(s)} has {full} dims", "list every dim, batch (0) first")
        if any(not -full <= d < full for d in self.dims):
            raise ShapeError(f"permute: dims {self.dims} are out of range for {fmt_shape(s)}")
        order = [d % full for d in self.dims]
        if sorted(order) != list(range(full)):
            raise ShapeError(f"permute: dims {self.dims} is not a permutation of the {full} dims "
                             f"of {fmt_shape(s)}")
        if order[0] != 0:
            raise ShapeError(f"permute: dims {self.dims} moves the batch dim of {fmt_shape(s)}",
                             "the batch (dim 0) must stay first")
        return T(tuple(s[d - 1] for d in order[1:]), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.permute({args[0]}, {py(self.dims)})"


@register
class Transpose(FunctionalOnly):
    """Swap two dims (neither may be the batch)."""

    kind: ClassVar[str] = "transpose"
    torch_name: ClassVar[str] = "torch.transpose"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim0: int = Field(description="first dim to swap (torch dims: 0 is the batch)")
    dim1: int = Field(description="second dim to swap")

    def infer(self, ins):
        s = list(ins[0].shape)
        what = f"transpose of {fmt_shape(ins[0].shape)}"
        a, b = norm_dim(self.dim0, len(s), what), norm_dim(self.dim1, len(s), what)
        s[a], s[b] = s[b], s[a]
        return T(tuple(s), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.transpose({args[0]}, {py(self.dim0)}, {py(self.dim1)})"


@register
class Squeeze(FunctionalOnly):
    """Remove size-1 dim(s) `dim`; a dim whose size is not 1 is an error, not a silent no-op."""

    kind: ClassVar[str] = "squeeze"
    torch_name: ClassVar[str] = "torch.squeeze"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: Union[int, tuple[int, ...]] = Field(description="the dim (or dims) of size 1 to remove")

    def infer(self, ins):
        s = ins[0].shape
        dims = _dims(self.dim, len(s), f"squeeze of {fmt_shape(s)}")
        for d in dims:
            if s[d] != 1:
                raise ShapeError(f"squeeze: dim {d + 1} of {fmt_shape(s)} has size {s[d]}, not 1")
        return T(tuple(n for i, n in enumerate(s) if i not in dims), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.squeeze({args[0]}, {py(self.dim)})"


@register
class Unsqueeze(FunctionalOnly):
    """Insert a size-1 dim at position `dim` of the result (not before the batch)."""

    kind: ClassVar[str] = "unsqueeze"
    torch_name: ClassVar[str] = "torch.unsqueeze"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(description="where the new dim goes in the output (torch dims)")

    def infer(self, ins):
        s = ins[0].shape
        d = norm_dim(self.dim, len(s) + 1, f"unsqueeze of {fmt_shape(s)}")
        return T(s[:d] + (1,) + s[d:], ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.unsqueeze({args[0]}, {py(self.dim)})"


def _resized(shape: tuple[int, ...], d: int, size: int) -> tuple[int, ...]:
    """`shape` with per-sample dim `d` set to `size`."""
    return shape[:d] + (size,) + shape[d + 1:]


def _check_position(what: str, value: int, dim: int, shape: tuple[int, ...], d: int) -> None:
    """Refuse a position outside per-sample dim `d` (torch `dim`); negative counts from the end."""
    if not -shape[d] <= value < shape[d]:
        raise ShapeError(f"{what} {value} is out of range for dim {dim} of {fmt_shape(shape)} "
                         f"(size {shape[d]})")


class _Pieces(FunctionalOnly):
    """Cut `dim` into pieces, one output each; a kind says only how long the pieces are."""

    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE

    def _sizes(self, n: int, s: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError(self.kind)

    def infer(self, ins):
        s = ins[0].shape
        d = norm_dim(self.dim, len(s), f"{self.kind} of {fmt_shape(s)}")  # each kind has a dim
        return tuple(T(_resized(s, d, k), ins[0].dtype) for k in self._sizes(s[d], s))


@register
class Split(_Pieces):
    """Split along `dim` into pieces of one size (the last may be smaller) or of listed sizes."""

    kind: ClassVar[str] = "split"
    torch_name: ClassVar[str] = "torch.split"
    split_size_or_sections: Union[PositiveInt, tuple[PositiveInt, ...]] = Field(
        description="size of each piece, or a tuple of piece sizes summing to the dim")
    dim: int = Field(default=1, description="the dim to split (torch dims: 1 is channels)")

    def _sizes(self, n, s):
        sizes = self.split_size_or_sections
        if isinstance(sizes, int):
            if -(-n // sizes) > 10_000:
                raise ShapeError(f"split: pieces of {sizes} would cut dim {self.dim} of "
                                 f"{fmt_shape(s)} into {-(-n // sizes):,} tensors (at most 10,000)")
            sizes = (sizes,) * (n // sizes) + ((n % sizes,) if n % sizes else ())
        elif sum(sizes) != n:
            raise ShapeError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {self.dim} "
                             f"of {fmt_shape(s)} has size {n}")
        return sizes

    def functional_source(self, args, ins):
        return f"torch.split({args[0]}, {py(self.split_size_or_sections)}, dim={py(self.dim)})"


@register
class Chunk(_Pieces):
    """Split along `dim` into `chunks` near-equal pieces (torch.chunk: may give fewer)."""

    kind: ClassVar[str] = "chunk"
    torch_name: ClassVar[str] = "torch.chunk"
    chunks: PositiveInt = Field(le=10_000, description="number of pieces (at most 10,000)")
    dim: int = Field(default=1, description="the dim to split (torch dims: 1 is channels)")

    def _sizes(self, n, s):
        size = -(-n // self.chunks)  # torch.chunk: pieces of ceil(n / chunks), the last smaller
        count = -(-n // size) if size else 1
        return (size,) * (count - 1) + (n - size * (count - 1),)

    def functional_source(self, args, ins):
        return f"torch.chunk({args[0]}, {py(self.chunks)}, dim={py(self.dim)})"


@register
class Select(FunctionalOnly):
    """Pick one `index` along `dim` and drop that dim (x[:, index] for dim=1)."""

    kind: ClassVar[str] = "select"
    torch_name: ClassVar[str] = "torch.select"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(description="the dim to index (torch dims: 0 is the batch)")
    index: int = Field(description="the position to keep; negative counts from the end")

    def infer(self, ins):
        s = ins[0].shape
        d = norm_dim(self.dim, len(s), f"select of {fmt_shape(s)}")
        _check_position("select: index", self.index, self.dim, s, d)
        return T(s[:d] + s[d + 1:], ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.select({args[0]}, {py(self.dim)}, {py(self.index)})"


@register
class Narrow(FunctionalOnly):
    """Keep `length` entries of `dim` starting at `start` (x[:, start:start+length] for dim=1)."""

    kind: ClassVar[str] = "narrow"
    torch_name: ClassVar[str] = "torch.narrow"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(description="the dim to narrow (torch dims: 0 is the batch)")
    start: int = Field(description="first index kept; negative counts from the end")
    length: PositiveInt = Field(description="number of entries kept")

    def infer(self, ins):
        s = ins[0].shape
        d = norm_dim(self.dim, len(s), f"narrow of {fmt_shape(s)}")
        _check_position("narrow: start", self.start, self.dim, s, d)
        if self.start % s[d] + self.length > s[d]:
            raise ShapeError(f"narrow: start {self.start} + length {self.length} runs past dim "
                             f"{self.dim} of {fmt_shape(s)} (size {s[d]})")
        return T(_resized(s, d, self.length), ins[0].dtype)

    def functional_source(self, args, ins):
        return f"torch.narrow({args[0]}, {py(self.dim)}, {py(self.start)}, {py(self.length)})"


class _Reduce(FunctionalOnly):
    fn: ClassVar[str] = "torch.mean"
    dim: Union[int, tuple[int, ...]] = Field(description="the dim or dims to reduce (not the batch)")
    keepdim: bool = Field(default=False, description="keep reduced dims with size 1")

    def infer(self, ins):
        s = ins[0].shape
        dims = _dims(self.dim, len(s), f"{self.kind} of {fmt_shape(s)}")
        shape = tuple(1 if i in dims else n for i, n in enumerate(s) if self.keepdim or i not in dims)
        return T(shape, "float" if ins[0].dtype == "float" else "long")

    def functional_source(self, args, ins):
        keep = ", keepdim=True" if self.keepdim else ""
        return f"{self.fn}({args[0]}, dim={py(self.dim)}{keep})"


Mean = variant(_Reduce, "mean", "torch.mean", "Mean over `dim` (one dim or several).",
               fn="torch.mean", name="Mean")
Sum = variant(_Reduce, "sum", "torch.sum", "Sum over `dim` (one dim or several); long and bool "
              "inputs sum to long.", fn="torch.sum", input_dtypes=ANY_DTYPE, name="Sum")


@register
class Stack(FunctionalOnly):
    """Stack equal-shaped tensors along a new dim `dim` (torch dims: 1 is right after the batch)."""

    kind: ClassVar[str] = "stack"
    torch_name: ClassVar[str] = "torch.stack"
    inputs: ClassVar[tuple[str, ...]] = ("*xs",)
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    dim: int = Field(default=1, description="position of the new dim in the output")

    def infer(self, ins):
        s = ins[0].shape
        if any(t.shape != s for t in ins[1:]):
            raise ShapeError("stack needs equal shapes, got "
                             + ", ".join(fmt_shape(t.shape) for t in ins))
        d = norm_dim(self.dim, len(s) + 1, f"stack of {fmt_shape(s)}")
        dtype = ins[0].dtype
        for t in ins[1:]:
            dtype = promote(dtype, t.dtype)  # torch.stack promotes mixed dtypes
        return T(s[:d] + (len(ins),) + s[d:], dtype)

    def functional_source(self, args, ins):
        return f"torch.stack([{', '.join(args)}], dim={py(self.dim)})"


@register
class Pad(FunctionalOnly):
    """Pad (or, with negative sizes, crop) the last dims: F.pad's (left, right, top, bottom, ...)."""

    kind: ClassVar[str] = "pad"
    torch_name: ClassVar[str] = "F.pad"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    pad: tuple[int, ...] = Field(description="(before, after) pairs, last dim first")
    mode: Literal["constant", "reflect", "replicate", "circular"] = Field(
        default="constant", description="what fills the padding")
    value: Optional[float] = Field(default=None, description="fill value for mode='constant' "
                                   "(default 0)")

    @field_validator("pad")
    @classmethod
    def _pairs(cls, pad: tuple[int, ...]) -> tuple[int, ...]:
        if not pad or len(pad) % 2:
            raise ValueError(f"pad needs (before, after) pairs, got {len(pad)} values")
        return pad

    def infer(self, ins):
        x = ins[0]
        s, k = list(x.shape), len(self.pad) // 2
        if k > len(s):
            raise ShapeError(f"pad: {len(self.pad)} values pad {k} dims, but {fmt_shape(x.shape)} "
                             f"has only {len(s)} besides the batch")
        if self.mode != "constant":
            if self.value is not None:
                raise ShapeError(f"pad: value is only for mode='constant', not {self.mode!r}")
            if k > 3 or len(s) not in (k, k + 1):
                raise ShapeError(f"pad: mode={self.mode!r} with {len(self.pad)} values pads the "
                                 f"last {k} dims of [B, C, ...{k} dims], got {fmt_shape(x.shape)}",
                                 "non-constant padding takes 1, 2 or 3 trailing dims")
            if x.dtype == "bool":
                raise ShapeError(f"pad: mode={self.mode!r} needs a float or long tensor")
        for i in range(k):
            d = len(s) - 1 - i
            before, after = self.pad[2 * i], self.pad[2 * i + 1]
            if self.mode == "reflect" and max(before, after) >= s[d]:
                raise ShapeError(f"pad: reflect padding {(before, after)} must be smaller than "
                                 f"dim {d + 1} of {fmt_shape(x.shape)} (size {s[d]})")
            if self.mode == "circular" and max(before, after) > s[d]:
                raise ShapeError(f"pad: circular padding {(before, after)} is larger than dim "
                                 f"{d + 1} of {fmt_shape(x.shape)} (size {s[d]})")
            if s[d] + min(before, 0) + min(after, 0) < 0:
                # torch crops the negative sides first, each from the input as it is
                raise ShapeError(f"pad: cropping {(before, after)} removes more than dim {d + 1} "
                                 f"of {fmt_shape(x.shape)} holds (size {s[d]})")
            s[d] += before + after
            if s[d] <= 0:
                raise ShapeError(f"pad: padding {(before, after)} leaves nothing of dim {d + 1} of "
                                 f"{fmt_shape(x.shape)}")
        return T(tuple(s), x.dtype)

    def functional_source(self, args, ins):
        rest = self.kwargs_source(["mode", "value"])
        return f"F.pad({args[0]}, {py(self.pad)}{', ' + rest if rest else ''})"


_INTERP_DIMS = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "area": (1, 2, 3),
                "linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}


@register
class Upsample(Layer):
    """Resize the spatial dims of [C, *spatial] by scale_factor or to size (nn.Upsample)."""

    kind: ClassVar[str] = "upsample"
    torch_name: ClassVar[str] = "nn.Upsample"
    category: ClassVar[str] = "tensor"
    scale_factor: Optional[Union[PositiveFloat, tuple[PositiveFloat, ...]]] = Field(
        default=None, description="multiplier for each spatial size (give this or size)")
    size: Optional[Union[PositiveInt, tuple[PositiveInt, ...]]] = Field(
        default=None, description="output spatial size (give this or scale_factor)")
    mode: Literal["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear",
                  "area"] = Field(default="nearest", description="interpolation algorithm")
    align_corners: Optional[bool] = Field(default=None, description="align corner pixels "
                                          "(linear, bilinear, bicubic, trilinear only)")

    def infer(self, ins):
        x = ins[0]
        n = len(x.shape) - 1
        allowed = _INTERP_DIMS[self.mode]
        if n not in allowed:
            want = " or ".join(f"{d + 2}-d" for d in allowed)
            raise ShapeError(f"upsample with mode={self.mode!r} expects a {want} input "
                             f"[B, C, ...spatial], got {fmt_shape(x.shape)}")
        if (self.size is None) == (self.scale_factor is None):
            raise ShapeError("upsample needs exactly one of scale_factor and size")
        if self.align_corners is not None and self.mode not in ("linear", "bilinear", "bicubic",
                                                                "trilinear"):
            raise ShapeError(f"upsample: align_corners does not apply to mode={self.mode!r}")
        for name in ("size", "scale_factor"):
            v = getattr(self, name)
            if isinstance(v, tuple) and len(v) != n:
                raise ShapeError(f"upsample: {name} has {len(v)} values, but {fmt_shape(x.shape)} "
                                 f"has {n} spatial dims")
        if self.size is not None:
            out = (self.size,) * n if isinstance(self.size, int) else self.size
        else:
            f = (self.scale_factor,) * n if isinstance(self.scale_factor, float) else self.scale_factor
            out = tuple(math.floor(x.shape[1 + i] * f[i]) for i in range(n))
            if any(o <= 0 for o in out):
                raise ShapeError(f"upsample: scale_factor {self.scale_factor} shrinks "
                                 f"{fmt_shape(x.shape)} to nothing")
        return T((x.shape[0], *out))

    def _kwargs(self) -> str:
        return self.kwargs_source(["size", "scale_factor", "mode", "align_corners"])

    def init_source(self, ins):
        return f"nn.Upsample({self._kwargs()})"

    def functional_source(self, args, ins):
        return f"F.interpolate({args[0]}, {self._kwargs()})"
