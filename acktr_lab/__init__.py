"""acktr_lab: ACKTR (K-FAC natural-gradient actor-critic) on TensorFlow 2 and gymnasium,
with the Stable Baselines 2 API and live notebook dashboards."""

# first: TensorFlow reads these variables when it is first imported (by the modules below)
from acktr_lab.tensorflow_env import TENSORFLOW_ENV_DEFAULTS  # isort: skip

from acktr_lab.acktr import ACKTR
from acktr_lab.expert import ExpertDataset, generate_expert_traj
from acktr_lab.policies import CnnPolicy, MlpPolicy
from acktr_lab.recurrent import CnnLnLstmPolicy, CnnLstmPolicy, MlpLnLstmPolicy, MlpLstmPolicy
from acktr_lab.report import FactorEigenvalues, PretrainReport, UpdateReport
from acktr_lab.trainer import Trainer, TrainerSnapshot
from acktr_lab.vec_env import DummyVecEnv, SubprocVecEnv, make_vec_env

__all__ = [
    "ACKTR",
    "TENSORFLOW_ENV_DEFAULTS",
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
