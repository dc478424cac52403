"""Stable Baselines 2's ``stable_baselines.gail`` import path for the expert-data API.

``from acktr_lab.gail import ExpertDataset, generate_expert_traj`` works as
``from stable_baselines.gail import ExpertDataset, generate_expert_traj`` does.
(GAIL itself is not implemented; only the dataset tools live here.)
"""

from __future__ import annotations

from acktr_lab.expert import DataLoader, ExpertDataset, generate_expert_traj

__all__ = ["DataLoader", "ExpertDataset", "generate_expert_traj"]
