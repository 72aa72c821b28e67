"""Recurrent layers: rnn, lstm, gru over a sequence [T, F] (batch first), returning the output
sequence [T, hidden_size * directions] or, with last=True, its last step."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from nnspec.layers.base import Layer, ShapeError, T, fmt_shape, py, register, variant


_HIDDEN = "size of the hidden state (per direction)"
_LAYERS = "stacked recurrent layers"
_BIDIR = "also run the sequence backwards; the output width doubles"
_DROPOUT = "dropout between stacked layers (training only)"
_BIAS = "use bias_ih and bias_hh"
_LAST = ("return only the last time step [H * directions], not the whole sequence (bidirectional: "
         "its backward half has then seen only that step)")
_BATCH_FIRST = "always true: nnspec tensors lead with the batch"


class _Recurrent(Layer):
    """The rules of rnn, lstm and gru, and the arguments all three take (in torch's order)."""

    category: ClassVar[str] = "recurrent"
    gates: ClassVar[int] = 1          # rows of weight_ih per hidden unit: 1 rnn, 3 gru, 4 lstm
    counted: ClassVar[bool] = True    # whether flop_counter sees its matmuls on CPU (see flops)
    hidden_size: PositiveInt = Field(description=_HIDDEN)
    num_layers: PositiveInt = Field(default=1, le=1000, description=_LAYERS)
    bidirectional: bool = Field(default=False, description=_BIDIR)
    dropout: float = Field(default=0.0, ge=0.0, le=1.0, description=_DROPOUT)
    bias: bool = Field(default=True, description=_BIAS)

    def _check(self, x: T) -> None:
        if len(x.shape) != 2:
            raise ShapeError(f"{self.kind} expects a sequence [B, T, F], got {fmt_shape(x.shape)}",
                             "flatten the features of each time step into one dim first")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def infer(self, ins):
        (x,) = ins
        self._check(x)
        width = self.hidden_size * self.directions
        return T((width,)) if self.last else T((x.shape[0], width))

    def _layer_inputs(self, x: T) -> list[int]:
        return [x.shape[1]] + [self.hidden_size * self.directions] * (self.num_layers - 1)

    def params(self, ins):
        g, h = self.gates * self.hidden_size, self.hidden_size
        p = {}
        for layer, size in enumerate(self._layer_inputs(ins[0])):
            for sfx in ("", "_reverse")[: self.directions]:
                p[f"weight_ih_l{layer}{sfx}"] = (g, size)
                p[f"weight_hh_l{layer}{sfx}"] = (g, h)
                if self.bias:
                    p[f"bias_ih_l{layer}{sfx}"] = (g,)
                    p[f"bias_hh_l{layer}{sfx}"] = (g,)
        return p

    def flops(self, ins, outs):
        # Per time step, layer and direction torch multiplies the input by weight_ih and the
        # hidden state by weight_hh: 2 * gates*H * (in + H) per sample. On CPU, GRU and RNN run as
        # those mm/addmm calls and flop_counter counts them. LSTM in float32 runs as one oneDNN
        # kernel (aten.mkldnn_rnn_layer) that flop_counter has no formula for, so it counts 0
        # (with float64 or oneDNN disabled it decomposes and the same formula holds).
        steps, h = ins[0].shape[0], self.hidden_size
        per_step = sum(2 * self.gates * h * (size + h) for size in self._layer_inputs(ins[0]))
        return steps * per_step * self.directions

    def flops_unseen_on_cpu(self, ins, outs):
        return 0 if self.counted else self.flops(ins, outs)

    def init_source(self, ins):
        rest = self.kwargs_source(self._ctor_args())
        return (f"{self.prelude[0]}({py(ins[0].shape[1])}, {py(self.hidden_size)}"
                f"{', ' + rest if rest else ''})")

    def _ctor_args(self) -> list[str]:
        return ["num_layers", "bidirectional", "dropout", "bias", "last"]


@register
class RNN(_Recurrent):
    """Elman RNN h_t = tanh(W_ih x_t + W_hh h_{t-1} + b) (torch.nn.RNN, batch first)."""

    kind: ClassVar[str] = "rnn"
    torch_name: ClassVar[str] = "nn.RNN"
    prelude: ClassVar[tuple[str, ...]] = ("SequenceRNN",)
    gates: ClassVar[int] = 1
    # after bias and before last, as positional arguments have always been ordered
    nonlinearity: Literal["tanh", "relu"] = Field(default="tanh", description="tanh or relu")
    last: bool = Field(default=False, description=_LAST)
    batch_first: Literal[True] = Field(default=True, description=_BATCH_FIRST)

    def _ctor_args(self):
        return super()._ctor_args() + ["nonlinearity"]


class _Gated(_Recurrent):
    """lstm and gru: the arguments after rnn's nonlinearity, which they do not take."""

    last: bool = Field(default=False, description=_LAST)
    batch_first: Literal[True] = Field(default=True, description=_BATCH_FIRST)


LSTM = variant(_Gated, "lstm", "nn.LSTM", "Long short-term memory (torch.nn.LSTM, batch first); "
               "returns the output sequence.", prelude=("SequenceLSTM",), gates=4, counted=False)
GRU = variant(_Gated, "gru", "nn.GRU", "Gated recurrent unit (torch.nn.GRU, batch first); returns "
              "the output sequence.", prelude=("SequenceGRU",), gates=3)
