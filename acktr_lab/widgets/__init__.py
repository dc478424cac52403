"""Notebook dashboards: live plots of the training reports and controls for the live
hyperparameters. ``TrainingPlots`` is pure matplotlib and also works outside notebooks;
``Dashboard`` needs ipywidgets (the ``notebooks`` extra)."""

from __future__ import annotations

from acktr_lab.plots import TrainingPlots
from acktr_lab.widgets.dashboard import LIVE_CONTROLS, Dashboard
from acktr_lab.widgets.pretrain import PretrainDashboard

__all__ = ["LIVE_CONTROLS", "Dashboard", "PretrainDashboard", "TrainingPlots"]
