"""The `gated_linear` layer kind for nnspec: kinds.py declares it to nnspec, modules.py is the
PyTorch module that generated model.py builds, interp.py its rule for nnspec's interpreter.

This file imports nothing, so model.py needs only torch and modules.py to run.
"""
