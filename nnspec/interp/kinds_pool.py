"""Pooling: windowed max/average, adaptive and global pooling."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nnspec.layers.base import ntuple
from nnspec.interp.registry import kind

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _window(layer) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """kernel, stride (the kernel when not given) and padding, one per spatial dim."""
    dims = layer.dims
    k = ntuple(layer.kernel_size, dims)
    s = k if layer.stride is None else ntuple(layer.stride, dims)
    return k, s, ntuple(layer.padding, dims)


@kind("maxpool1d", "maxpool2d", "maxpool3d")
def max_pool(layer, w, args, kwargs, ctx):
    return _MAX[layer.dims](args[0], *_window(layer), ntuple(layer.dilation, layer.dims),
                            ceil_mode=layer.ceil_mode)


@kind("avgpool1d", "avgpool2d", "avgpool3d")
def avg_pool(layer, w, args, kwargs, ctx):
    return _AVG[layer.dims](args[0], *_window(layer), ceil_mode=layer.ceil_mode,
                            count_include_pad=layer.count_include_pad)


def _adaptive_windows(x: torch.Tensor, out: tuple, reduce):
    """Adaptive pooling from its definition: output cell i of a dim of size n covers inputs
    floor(i*n/out) .. ceil((i+1)*n/out) - 1."""
    dims = len(out)
    for d in range(dims):
        axis = x.dim() - dims + d
        n, m = x.shape[axis], out[d]
        cells = []
        for i in range(m):
            start, end = (i * n) // m, -((-(i + 1) * n) // m)
            cells.append(reduce(x.narrow(axis, start, end - start), axis))
        x = torch.stack(cells, dim=axis)
    return x


@kind("adaptive_avgpool1d", "adaptive_avgpool2d", "adaptive_avgpool3d", "adaptive_maxpool1d",
      "adaptive_maxpool2d", "adaptive_maxpool3d")
def adaptive_pool(layer, w, args, kwargs, ctx):
    x = args[0]
    dims = layer.dims
    size = layer.output_size
    spatial = x.shape[2:]
    out = (size,) * dims if isinstance(size, int) else tuple(
        spatial[i] if o is None else o for i, o in enumerate(size))
    if "max" in layer.kind:
        return _adaptive_windows(x, out, lambda t, a: torch.amax(t, dim=a))
    # the mean of a window is separable: averaging dim by dim is the window's mean
    return _adaptive_windows(x, out, lambda t, a: torch.mean(t, dim=a))


@kind("global_avgpool", "global_maxpool")
def global_pool(layer, w, args, kwargs, ctx):
    x = args[0]
    dims = tuple(range(2, x.dim()))
    return torch.mean(x, dim=dims) if layer.kind == "global_avgpool" else torch.amax(x, dim=dims)
