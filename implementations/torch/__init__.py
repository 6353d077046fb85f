"""PyTorch implementations: an MLP, the UvA course ConvNets, custom BatchNorm/LayerNorm layers, training programs."""
