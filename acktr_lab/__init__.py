"""acktr_lab: ACKTR (K-FAC natural-gradient actor-critic) on TensorFlow 2 and gymnasium,
with the Stable Baselines 2 API and live notebook dashboards."""

import os

# TensorFlow's C++ start-up lines (absl::InitializeLog, cpu_feature_guard, oneDNN) are noise
# for users of the CLI and the notebooks: keep warnings and info out unless the user set
# their own level. It must be set before TensorFlow is first imported, which happens below.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from acktr_lab.acktr import ACKTR
from acktr_lab.expert import ExpertDataset, generate_expert_traj
from acktr_lab.policies import CnnPolicy, MlpPolicy
from acktr_lab.recurrent import CnnLnLstmPolicy, CnnLstmPolicy, MlpLnLstmPolicy, MlpLstmPolicy
from acktr_lab.report import FactorEigenvalues, PretrainReport, UpdateReport
from acktr_lab.trainer import Trainer, TrainerSnapshot
from acktr_lab.vec_env import DummyVecEnv, SubprocVecEnv, make_vec_env

__all__ = [
    "ACKTR",
    "CnnLnLstmPolicy",
    "CnnLstmPolicy",
    "CnnPolicy",
    "DummyVecEnv",
    "ExpertDataset",
    "FactorEigenvalues",
    "MlpLnLstmPolicy",
    "MlpLstmPolicy",
    "MlpPolicy",
    "PretrainReport",
    "SubprocVecEnv",
    "Trainer",
    "TrainerSnapshot",
    "UpdateReport",
    "generate_expert_traj",
    "make_vec_env",
]
