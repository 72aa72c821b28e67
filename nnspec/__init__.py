"""nnspec: describe a neural network once, run it anywhere."""
