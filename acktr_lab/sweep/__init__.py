"""Sweeps and population-based training on Ray Tune (the ``sweep`` extra: ``pip install acktr_lab[sweep]``).

:func:`run` trains one ACKTR trial per configuration and seed through the step-wise trainer,
reporting to Tune; checkpoints are model zips with the K-FAC state. The rest of acktr_lab
never imports Ray.
"""

from acktr_lab.sweep.runner import SweepResult, run, start_ray
from acktr_lab.sweep.trial import TrialSetup, statistics_fingerprint, train_trial

__all__ = ["SweepResult", "TrialSetup", "run", "start_ray", "statistics_fingerprint", "train_trial"]
