"""Independent oracles: numpy float64 re-implementations and PyTorch built-ins with copied
weights. Nothing here imports the code under test, and nothing here depends on the order in
which any code consumes the random generator."""
