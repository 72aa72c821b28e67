"""Layer kinds with mistakes, for nnspec's plugin tests."""
