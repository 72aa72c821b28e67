"""Embeddings and learned tensors: token embedding tables, learned and sinusoidal position
encodings, free-standing parameters (class tokens, scales) and zeros_like / ones_like."""
from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from nnspec.layers.base import ANY_DTYPE, Layer, ShapeError, T, fmt_shape, py, register
from nnspec.layers.tensor import FunctionalOnly


@register
class Embedding(Layer):
    """A lookup table: long ids [...] -> vectors [..., embedding_dim] (torch.nn.Embedding)."""

    kind: ClassVar[str] = "embedding"
    torch_name: ClassVar[str] = "nn.Embedding"
    category: ClassVar[str] = "embedding"
    input_dtypes: ClassVar[tuple[str, ...]] = ("long",)
    num_embeddings: PositiveInt = Field(description="number of rows: the vocabulary size")
    embedding_dim: PositiveInt = Field(description="size of each embedding vector")
    padding_idx: Optional[int] = Field(
        default=None, description="id whose row is kept at zero and gets no gradient")

    def infer(self, ins):
        (x,) = ins
        if x.dtype != "long":
            raise ShapeError(f"embedding expects long (integer) ids, got a {x.dtype} tensor "
                             f"{fmt_shape(x.shape)}",
                             "declare the ids as long[...], or use linear for float features")
        n = self.num_embeddings
        if self.padding_idx is not None and not -n <= self.padding_idx < n:
            raise ShapeError(f"embedding: padding_idx {self.padding_idx} is outside the table of "
                             f"{self.num_embeddings} rows")
        return T(x.shape + (self.embedding_dim,))

    def params(self, ins):
        return {"weight": (self.num_embeddings, self.embedding_dim)}

    def init_source(self, ins):
        rest = self.kwargs_source(["padding_idx"])
        return (f"nn.Embedding({py(self.num_embeddings)}, {py(self.embedding_dim)}"
                f"{', ' + rest if rest else ''})")


@register
class PositionEmbedding(Layer):
    """A learned position table (BERT's, GPT-2's wpe): the first T rows for a length-T input."""

    # the input's dim 1 is the length T (ids [T] or features [T, D]); the output is the table's
    # rows offset..offset+T-1 [T, embedding_dim], expanded over the batch. `weight` has
    # nn.Embedding's name and shape, so an nn.Embedding state_dict loads strictly.

    kind: ClassVar[str] = "position_embedding"
    torch_name: ClassVar[str] = "nn.Embedding"
    category: ClassVar[str] = "embedding"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    prelude: ClassVar[tuple[str, ...]] = ("PositionEmbedding",)
    num_positions: PositiveInt = Field(description="rows of the table: the longest sequence")
    embedding_dim: PositiveInt = Field(description="size of each position vector")
    offset: NonNegativeInt = Field(
        default=0, description="first row used (OPT's learned positions start at row 2)")

    def infer(self, ins):
        (x,) = ins
        if not x.shape:
            raise ShapeError(f"position_embedding expects a sequence [B, T] or [B, T, D], got "
                             f"{fmt_shape(x.shape)}")
        length = x.shape[0]
        if self.offset + length > self.num_positions:
            used = f" from row {self.offset}" if self.offset else ""
            raise ShapeError(f"position_embedding: the sequence {fmt_shape(x.shape)} has {length} "
                             f"positions, but the table has {self.num_positions} rows{used}",
                             "raise num_positions or shorten the sequence")
        return T((length, self.embedding_dim))

    def params(self, ins):
        return {"weight": (self.num_positions, self.embedding_dim)}

    def init_source(self, ins):
        rest = self.kwargs_source(["offset"])
        return (f"PositionEmbedding({py(self.num_positions)}, {py(self.embedding_dim)}"
                f"{', ' + rest if rest else ''})")


@register
class SinusoidalPositionEncoding(Layer):
    """Adds the fixed sin/cos position encodings of "Attention Is All You Need" to [T, D]."""

    # the table is a non-persistent buffer: it is not in state_dict

    kind: ClassVar[str] = "sinusoidal_position_encoding"
    torch_name: ClassVar[str] = ""  # torch.nn has none (its tutorials' PositionalEncoding)
    category: ClassVar[str] = "embedding"
    prelude: ClassVar[tuple[str, ...]] = ("SinusoidalPositionEncoding",)
    d_model: Optional[PositiveInt] = Field(
        default=None, description="width D of the input, checked when given (else inferred)")
    max_len: PositiveInt = Field(default=5000, description="longest sequence the table covers")

    def infer(self, ins):
        (x,) = ins
        if len(x.shape) != 2:
            raise ShapeError(f"sinusoidal_position_encoding expects a sequence [B, T, D], got "
                             f"{fmt_shape(x.shape)}")
        length, width = x.shape
        if self.d_model is not None and width != self.d_model:
            raise ShapeError(f"sinusoidal_position_encoding: d_model={self.d_model} but the input "
                             f"{fmt_shape(x.shape)} has width {width}",
                             "leave d_model out to take the input's width")
        if length > self.max_len:
            raise ShapeError(f"sinusoidal_position_encoding: the sequence {fmt_shape(x.shape)} is "
                             f"longer than max_len={self.max_len}")
        return x

    def init_source(self, ins):
        rest = self.kwargs_source(["max_len"])
        return f"SinusoidalPositionEncoding({py(ins[0].shape[1])}{', ' + rest if rest else ''})"


@register
class Parameter(Layer):
    """A learnable tensor (class token, per-channel scale), expanded over its input's batch."""

    # the input only gives the batch size; the output per sample has `shape`

    kind: ClassVar[str] = "parameter"
    torch_name: ClassVar[str] = "nn.Parameter"
    category: ClassVar[str] = "embedding"
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    # init_source builds an nn.Parameter, not a module: the attribute is the parameter, and
    # params() names it "" (the attribute itself).
    bare_parameter: ClassVar[bool] = True
    shape: tuple[PositiveInt, ...] = Field(
        description="the parameter's shape, without a batch dim, e.g. [1, 768] for a class token")
    # a number fills the tensor with it, as torchvision starts ConvNeXt's layer scale at 1e-6
    init: Union[Literal["zeros", "ones", "normal", "uniform"], float] = Field(
        default="zeros",
        description="initial values: zeros, ones, normal(0, std), uniform(-std, std), or a "
                    "number that fills it (ConvNeXt's layer scale: 1e-6)")
    std: float = Field(default=0.02, gt=0,
                       description="spread of the random init: normal's std, uniform's bound")
    batch_dim: bool = Field(
        default=False, description="the shape starts with the batch dim as 1, the way "
        "torchvision stores a class token ([1, 1, 768]): kept in the weight, expanded over the batch")

    def infer(self, ins):
        if self.batch_dim:
            if len(self.shape) < 2 or self.shape[0] != 1:
                raise ShapeError(f"parameter: with batch_dim=true the shape starts with the batch "
                                 f"dim as 1, got {list(self.shape)}",
                                 "write it as the reference stores it, e.g. [1, 1, 768], or "
                                 "leave batch_dim out and give the per-sample shape, [1, 768]")
            return T(tuple(self.shape[1:]))
        return T(tuple(self.shape))

    def params(self, ins):
        return {"": tuple(self.shape)}

    def init_source(self, ins):
        shape = py(tuple(self.shape))
        if isinstance(self.init, float):
            return f"nn.Parameter(torch.full({shape}, {py(self.init)}))"
        if self.init in ("zeros", "ones"):
            return f"nn.Parameter(torch.{self.init}({shape}))"
        if self.init == "normal":
            return f"nn.Parameter(torch.empty({shape}).normal_(0.0, {py(self.std)}))"
        return f"nn.Parameter(torch.empty({shape}).uniform_({py(-self.std)}, {py(self.std)}))"

    def call_source(self, module, args, ins):
        dims = "".join(", -1" for _ in self.shape[1 if self.batch_dim else 0:])
        return f"{module}.expand({args[0]}.shape[0]{dims})"


class _FillLike(FunctionalOnly):
    input_dtypes: ClassVar[tuple[str, ...]] = ANY_DTYPE
    fill: ClassVar[str] = "zeros"
    dtype: Optional[Literal["float", "long", "bool"]] = Field(
        default=None, description="dtype of the result (default: the input's)")

    def infer(self, ins):
        (x,) = ins
        return T(x.shape, self.dtype or x.dtype)

    def functional_source(self, args, ins):
        dtype = self.dtype
        if dtype is None or dtype == ins[0].dtype:
            return f"torch.{self.fill}_like({args[0]})"
        # "float" is the dtype float tensors are made in (as a module's parameters are), not
        # float32: a model in float64 would otherwise mix float32 into its layers
        torch_dtype = "torch.get_default_dtype()" if dtype == "float" else f"torch.{dtype}"
        return f"torch.{self.fill}_like({args[0]}, dtype={torch_dtype})"


@register
class ZerosLike(_FillLike):
    """A tensor of zeros shaped like the input (e.g. BERT's default token_type_ids)."""

    kind: ClassVar[str] = "zeros_like"
    torch_name: ClassVar[str] = "torch.zeros_like"
    fill: ClassVar[str] = "zeros"


@register
class OnesLike(_FillLike):
    """A tensor of ones shaped like the input (e.g. an all-ones attention mask)."""

    kind: ClassVar[str] = "ones_like"
    torch_name: ClassVar[str] = "torch.ones_like"
    fill: ClassVar[str] = "ones"
