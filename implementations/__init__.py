"""NumPy and PyTorch layers, the data loaders they share, and the training programs that use them."""
