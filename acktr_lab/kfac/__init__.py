"""K-FAC: Kronecker-factored approximate curvature for TensorFlow 2 (knows nothing of RL)."""

from acktr_lab.kfac.blocks import (
    BLOCKS,
    Conv2DBlock,
    CurvatureBlock,
    DenseBlock,
    KroneckerBlock,
    ScaleAndShiftBlock,
    make_block,
)
from acktr_lab.kfac.layers import (
    Capture,
    Conv2D,
    Dense,
    KfacLayer,
    ScaleAndShift,
    capture,
    layer_norm,
    orthogonal_initializer,
    parameter_budget,
)
from acktr_lab.kfac.optimizer import LIVE_HYPERPARAMETERS, KfacOptimizer, UpdatePlan, validate_hyperparameter

__all__ = [
    "BLOCKS",
    "LIVE_HYPERPARAMETERS",
    "Capture",
    "Conv2D",
    "Conv2DBlock",
    "CurvatureBlock",
    "Dense",
    "DenseBlock",
    "KfacLayer",
    "KfacOptimizer",
    "KroneckerBlock",
    "ScaleAndShift",
    "ScaleAndShiftBlock",
    "UpdatePlan",
    "capture",
    "layer_norm",
    "make_block",
    "orthogonal_initializer",
    "parameter_budget",
    "validate_hyperparameter",
]
