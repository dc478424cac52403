"""K-FAC: Kronecker-factored approximate curvature for TensorFlow 2 (knows nothing of RL)."""

from acktr_lab.kfac.blocks import Conv2DBlock, DenseBlock, KroneckerBlock, make_block
from acktr_lab.kfac.layers import Capture, Conv2D, Dense, KfacLayer, capture, orthogonal_initializer
from acktr_lab.kfac.optimizer import LIVE_HYPERPARAMETERS, KfacOptimizer, UpdatePlan, validate_hyperparameter

__all__ = [
    "LIVE_HYPERPARAMETERS",
    "Capture",
    "Conv2D",
    "Conv2DBlock",
    "Dense",
    "DenseBlock",
    "KfacLayer",
    "KfacOptimizer",
    "KroneckerBlock",
    "UpdatePlan",
    "capture",
    "make_block",
    "orthogonal_initializer",
    "validate_hyperparameter",
]
