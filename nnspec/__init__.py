"""nnspec: describe a neural network once in a .nn file, compile it to PyTorch, run it anywhere."""
from nnspec.compile import Spec, load, loads
from nnspec.lang.diagnostics import Diagnostic, SpecError

__version__ = "0.1.0"
__all__ = ["Spec", "SpecError", "Diagnostic", "load", "loads", "__version__"]
