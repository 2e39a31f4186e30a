"""Graph convolution operators (PyG ``MessagePassing`` layers)."""

from lngraph.nn.conv.seag_conv import SEAGConv

__all__ = ["SEAGConv"]
