"""acktr_lab: ACKTR (K-FAC natural-gradient actor-critic) on TensorFlow 2 and gymnasium,
with the Stable Baselines 2 API and live notebook dashboards."""

import os

# TensorFlow's C++ start-up lines (absl::InitializeLog, cpu_feature_guard, oneDNN) are noise
# for users of the CLI and the notebooks: keep warnings and info out unless the user set
# their own level. It must be set before TensorFlow is first imported, which happens below.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# On CPUs with AVX512-VNNI, BF16 or AMX (AMD Zen 4, recent Xeons) TensorFlow turns on its
# oneDNN kernels by default and announces it with an absl line that TF_CPP_MIN_LOG_LEVEL
# does not silence; those kernels also round differently from the Eigen ones every other
# CPU runs, so the same seed would train differently from one CPU kind to another. Keep
# them off unless the user chose (TF_ENABLE_ONEDNN_OPTS=1 turns them on).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

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
