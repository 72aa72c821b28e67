"""nnspec: describe a neural network once in a .nn file, compile it to PyTorch, run it anywhere."""
from nnspec.compile import Spec, load, loads
from nnspec.lang.diagnostics import Diagnostic, SpecError
from nnspec.layers.base import register as register_layer

__version__ = "0.1.0"
__all__ = ["Spec", "SpecError", "Diagnostic", "load", "loads", "register_layer", "__version__"]
