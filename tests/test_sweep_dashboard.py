"""The sweep dashboard, driven through Tune's callback hooks with recorded-looking results."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from png_checks import assert_png

pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")
from acktr_lab.widgets.sweep import SweepDashboard, SweepMonitor


def trial(trial_id: str, **config: object) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config=config)


def result(steps: float, value: float, parent: str = "", at: float = 0.0) -> dict[str, float | str]:
    return {"timesteps": steps, "rollout/ep_return_mean": value, "pbt/parent": parent, "pbt/parent_timesteps": at}


def feed(dashboard: SweepDashboard, entries: list[tuple[SimpleNamespace, dict[str, float | str]]]) -> None:
    for index, (which, values) in enumerate(entries):
        dashboard.on_trial_result(index, [], which, values)


def test_curves_are_coloured_by_the_chosen_hyperparameter() -> None:
    dashboard = SweepDashboard(color_by="kfac_clip", redraw_interval=0.0)
    low, high = trial("a_00000", kfac_clip=0.001, seed=0), trial("a_00001", kfac_clip=0.1, seed=0)
    feed(dashboard, [(low, result(400, 20)), (high, result(400, 30)), (low, result(800, 60)), (high, result(800, 40))])
    figure = dashboard.figure(dashboard.monitor.leaderboard())
    lines = figure.axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[400, 800], [400, 800]]
    colours = [tuple(line.get_color()) for line in lines]
    assert colours[0] != colours[1]  # 0.001 and 0.1 at the two ends of the colour map
    assert figure.axes[1].get_ylabel() == "log10 kfac_clip"  # a colour bar, on a log scale for a 100× range
    assert_png(dashboard.image.value)


def test_leaderboard_ranks_by_the_latest_value() -> None:
    dashboard = SweepDashboard(color_by="kfac_clip", redraw_interval=0.0)
    a, b, c = trial("t_0", kfac_clip=0.001), trial("t_1", kfac_clip=0.01), trial("t_2", kfac_clip=0.1)
    feed(dashboard, [(a, result(400, 90)), (b, result(400, 10)), (c, result(400, 50)), (b, result(800, 120))])
    assert [t.trial_id for t in dashboard.monitor.leaderboard()] == ["t_1", "t_0", "t_2"]
    html = dashboard.table.value
    assert html.index("t_1") < html.index("t_0") < html.index("t_2") and "120.0" in html
    dashboard.on_trial_complete(5, [], c)
    assert "1 done" in dashboard.status.value and "2 running" in dashboard.status.value
    assert dashboard.trial_picker.options == ("t_1", "t_0")  # only running trials can be stopped


def test_stop_button_stops_the_picked_trial() -> None:
    dashboard = SweepDashboard(color_by="kfac_clip", redraw_interval=0.0)
    a, b = trial("t_0", kfac_clip=0.001), trial("t_1", kfac_clip=0.01)
    feed(dashboard, [(a, result(400, 90)), (b, result(400, 10))])
    dashboard.trial_picker.value = "t_1"
    dashboard.stop_button.click()
    assert dashboard.stopper("t_1", {}) and not dashboard.stopper("t_0", {}) and not dashboard.stopper.stop_all()
    dashboard.on_trial_complete(2, [], b)
    assert dashboard.monitor.trials["t_1"].status == "stopped"


def test_lineage_follows_pbt_exploits_back() -> None:
    """t_1 continued from t_0's checkpoint at 800 steps; later t_2 continued from t_1's at 1,600."""
    monitor = SweepMonitor()
    for trial_id, steps, value, parent, at in [
        ("t_0", 800, 50, "", 0),
        ("t_1", 800, 10, "", 0),
        ("t_1", 1200, 60, "t_0", 800),
        ("t_1", 1600, 80, "t_0", 800),
        ("t_2", 1600, 5, "", 0),
        ("t_2", 2000, 90, "t_1", 1600),
        ("t_2", 2400, 95, "t_1", 1600),
    ]:
        monitor.record(trial_id, {}, result(steps, value, parent, at))
    assert monitor.lineage("t_2") == [("t_2", np.inf), ("t_1", 1600.0), ("t_0", 800.0)]
    assert monitor.trials["t_2"].exploits == [(1600.0, "t_1")]
    curve = monitor.trials["t_1"].timesteps
    assert curve[0] == 800.0 and np.isnan(curve[1]) and curve[2:] == [1200.0, 1600.0]  # a break at the exploit
    dashboard = SweepDashboard(color_by="learning_rate")
    dashboard.monitor = monitor
    assert "← t_1 (checkpoint at 1,600 steps)" in dashboard.lineage_html("t_2")
    assert "← t_0 (checkpoint at 800 steps)" in dashboard.lineage_html("t_2")


def test_results_without_the_metric_are_kept_out_of_the_curves() -> None:
    monitor = SweepMonitor()
    monitor.record("t_0", {"x": 1}, {"timesteps": 400.0})
    monitor.record("t_0", {"x": 1}, {"timesteps": 800.0, "rollout/ep_return_mean": float("nan")})
    assert monitor.trials["t_0"].values == [] and np.isnan(monitor.trials["t_0"].latest)


def test_the_tune_callback_pickles_and_feeds_only_its_dashboard() -> None:
    import pickle

    dashboard = SweepDashboard(color_by="kfac_clip", redraw_interval=0.0)
    copy = pickle.loads(pickle.dumps(dashboard.callback))  # Tune pickles its callbacks with the experiment
    copy.on_trial_result(0, [], trial("t_0", kfac_clip=0.01), result(400, 30))
    assert dashboard.monitor.trials["t_0"].values == [30.0]
    pickle.loads(pickle.dumps(dashboard.stopper))
