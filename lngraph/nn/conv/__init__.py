"""Graph convolution operators (PyG ``MessagePassing`` layers)."""

from lngraph.nn.conv.positional_attention_conv import PositionalAttentionConv
from lngraph.nn.conv.seag_conv import SEAGConv

__all__ = ["PositionalAttentionConv", "SEAGConv"]
