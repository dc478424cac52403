"""ACKTR's losses on one batch, recorded for K-FAC: what the learner's update differentiates
and what the update-cost probe times, written once.

With ``n`` transitions, advantages ``Â`` and returns ``R``::

    L_pg  = mean(Â · −log π(a|s)) − ent_coef · mean(H[π(·|s)])
    L_vf  = mean((V(s) − R)²)
    L     = L_pg + vf_coef · L_vf
    L_F   = mean(log π(a|s)) − vf_fisher_coef · mean((V(s) − sg(V(s) + ε))²),  ε ~ N(0, 1)

``L_F`` is the sampled-Fisher loss: the actions are samples of the current policy, and the
value head has a unit-variance Gaussian predictive distribution, so ``V(s) + ε`` is a sample
of it. Only updates that take curvature statistics need it (and draw ``ε``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from acktr_lab.kfac import capture

#: Draws ``ε`` for ``L_F``: ``noise(shape, dtype)``.
ValueNoise = Callable[[tf.Tensor, tf.DType], tf.Tensor]


def acktr_losses(
    policy: Any,
    inputs: tuple[Any, ...],
    coefficients: Mapping[str, tf.Variable | float],
    value_noise: ValueNoise | None,
) -> tuple[tf.GradientTape, Any, dict[str, Any]]:
    """The forward pass of ``policy`` over ``inputs`` (observations, initial state, episode
    starts, actions, advantages, returns) and the losses above, under a persistent gradient
    tape and K-FAC's layer recording.

    Returns the tape, the recording and the terms ``loss``, ``policy_loss``, ``value_loss``,
    ``entropy`` (the batch mean), ``distribution`` (the policy's distribution) and, when
    ``value_noise`` is given, ``fisher_loss``.
    """
    observations, initial_state, episode_starts, actions, advantages, returns = inputs
    with tf.GradientTape(persistent=True) as tape, capture() as recorded:
        distribution, values, _ = policy.unroll(observations, initial_state, episode_starts)
        neglogp = -distribution.log_prob(actions)
        entropy = tf.reduce_mean(distribution.entropy())
        policy_loss = tf.reduce_mean(advantages * neglogp) - coefficients["ent_coef"] * entropy
        value_loss = tf.reduce_mean(tf.square(values - returns))
        terms: dict[str, Any] = {
            "loss": policy_loss + coefficients["vf_coef"] * value_loss,
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "distribution": distribution,
        }
        if value_noise is not None:
            noisy_values = tf.stop_gradient(values + value_noise(tf.shape(values), values.dtype))
            terms["fisher_loss"] = -tf.reduce_mean(neglogp) - coefficients["vf_fisher_coef"] * tf.reduce_mean(
                tf.square(values - noisy_values)
            )
    return tape, recorded, terms
