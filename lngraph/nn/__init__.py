"""Neural layers of the asymmetric matcher: encoders, the SEAG graph layer, the SCB head and
the losses. Knows no files and no command line."""

from lngraph.nn.conv import SEAGConv
from lngraph.nn.encoders import GeometryEncoder, ResNetEncoder, knn_geometry
from lngraph.nn.losses import class_balanced_bce, se_loss, te_loss
from lngraph.nn.scb_head import SCBHead, scb_score

__all__ = ["GeometryEncoder", "ResNetEncoder", "SCBHead", "SEAGConv", "class_balanced_bce",
           "knn_geometry", "scb_score", "se_loss", "te_loss"]
