"""Writes the tutorial notebooks (without outputs). Run: python notebooks/make_notebooks.py"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

QUICK = '''import os

# The test suite sets ACKTR_LAB_QUICK=1 to shrink every run; unset it for the real thing.
QUICK = os.environ.get("ACKTR_LAB_QUICK") == "1"'''


def write(name: str, cells: list) -> None:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    nbformat.write(notebook, HERE / name)


def train_and_watch() -> None:
    write(
        "01_train_and_watch.ipynb",
        [
            new_markdown_cell(
                "# Train ACKTR and watch it learn\n\n"
                "ACKTR is an actor-critic whose update is a natural-gradient step: K-FAC approximates the "
                "Fisher matrix of every layer by a Kronecker product `A ⊗ G` (A = E[aaᵀ] of the layer's "
                "inputs, G = E[ggᵀ] of the gradients at its outputs), and a trust region bounds each step: "
                "`scale = min(1, √(kfac_clip / (lr²·gᵀF⁻¹g)))`.\n\n"
                "The dashboard below shows the episode return, the losses, the KL of every update against "
                "the trust region, the learning-rate schedule and the eigenvalues of the Fisher factors. "
                "Press **Run** to train in the background, move the sliders while it trains (the next update "
                "uses the new values), **Pause**, **Step** one update at a time, **Save** the agent."
            ),
            new_code_cell(QUICK),
            new_code_cell(
                "from acktr_lab import ACKTR\n"
                "from acktr_lab.widgets import Dashboard\n\n"
                "TIMESTEPS = 20_000 if QUICK else 200_000\n"
                "# rl-baselines-zoo settings for CartPole: 8 envs, no entropy bonus; everything else is ACKTR's default.\n"
                "model = ACKTR('MlpPolicy', 'CartPole-v1', n_envs=8, ent_coef=0.0, seed=0)\n"
                "trainer = model.trainer(TIMESTEPS)\n"
                "dashboard = Dashboard(trainer)\n"
                "dashboard"
            ),
            new_markdown_cell(
                "Run the next cell to train the first part of the run without clicking (it is also what an "
                "executed, headless notebook does). Then press **Run** above to continue live."
            ),
            new_code_cell("dashboard.run_blocking(max_updates=60 if QUICK else 600)\nprint(dashboard.status_text)"),
            new_markdown_cell(
                "## Steering from code\n\n"
                "The dashboard's controls call `trainer.set(...)`; you can too. Every report records the "
                "values it used, so the plots mark where a change happened."
            ),
            new_code_cell(
                "trainer.set(kfac_clip=0.002, lr_schedule='constant')\n"
                "report = trainer.step()\n"
                "dashboard.plots.add(report)\n"
                "print(report.hyperparameters['kfac_clip'], report.hyperparameters['lr_schedule'], "
                "round(report.learning_rate, 4))"
            ),
            new_markdown_cell(
                "## Branch an experiment and come back\n\n"
                "`trainer.snapshot()` keeps the whole training state in memory (parameters, K-FAC "
                "statistics, schedule position, random state and the environments); `trainer.restore` "
                "brings it back."
            ),
            new_code_cell(
                "snapshot = trainer.snapshot()\n"
                "trainer.set(learning_rate=0.02)\n"
                "branch = [trainer.step() for _ in range(5)]\n"
                "trainer.restore(snapshot)\n"
                "print('back at', trainer.num_timesteps, 'steps with learning_rate', "
                "trainer.hyperparameters['learning_rate'])"
            ),
            new_markdown_cell("## Outside notebooks\n\nThe same plots can be written to a PNG."),
            new_code_cell(
                "from pathlib import Path\n\n"
                "Path('runs').mkdir(exist_ok=True)\n"
                "dashboard.plots.save('runs/cartpole_dashboard.png')\n"
                "model.save('runs/cartpole_acktr.zip')"
            ),
        ],
    )


def save_load_compare() -> None:
    write(
        "02_save_load_compare.ipynb",
        [
            new_markdown_cell(
                "# Save, load and compare agents\n\n"
                "Models are saved as a zip of JSON and NumPy arrays: loading never executes code from the "
                "file. The K-FAC state is saved too, so training resumes where it stopped."
            ),
            new_code_cell(QUICK),
            new_code_cell(
                "import numpy as np\n"
                "from matplotlib.figure import Figure\n"
                "from IPython.display import display\n\n"
                "from acktr_lab import ACKTR\n"
                "from acktr_lab.cli import evaluate\n\n"
                "TIMESTEPS = 15_000 if QUICK else 150_000\n"
                "agents = {}\n"
                "for kfac_clip in (0.001, 0.01):\n"
                "    model = ACKTR('MlpPolicy', 'CartPole-v1', n_envs=8, ent_coef=0.0, kfac_clip=kfac_clip, seed=1)\n"
                "    curve = [(r.timesteps, np.mean(r.episode_returns)) for r in model.trainer(TIMESTEPS) "
                "if r.episode_returns]\n"
                "    agents[kfac_clip] = (model, np.array(curve))\n\n"
                "figure = Figure(figsize=(7, 3.5))\n"
                "axes = figure.add_subplot()\n"
                "for kfac_clip, (model, curve) in agents.items():\n"
                "    axes.plot(curve[:, 0], curve[:, 1], label=f'kfac_clip={kfac_clip}')\n"
                "axes.set_xlabel('timesteps'); axes.set_ylabel('episode return'); axes.legend()\n"
                "display(figure)"
            ),
            new_code_cell(
                "model, _ = agents[0.001]\n"
                "model.save('runs/cartpole_a.zip')\n"
                "loaded = ACKTR.load('runs/cartpole_a.zip', env='CartPole-v1')\n\n"
                "obs = np.random.default_rng(0).normal(0, 0.5, size=(64, 4)).astype(np.float32)\n"
                "same = np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])\n"
                "print('identical deterministic actions after load:', same)\n"
                "for kfac_clip, (agent, _) in agents.items():\n"
                "    returns = evaluate(agent, 'CartPole-v1', n_episodes=5, seed=100)\n"
                "    print(f'kfac_clip={kfac_clip}: mean return {np.mean(returns):.1f}')"
            ),
            new_markdown_cell("Training continues from the loaded file, K-FAC statistics included:"),
            new_code_cell(
                "loaded.learn(2_000 if QUICK else 20_000, reset_num_timesteps=False)\n"
                "print('K-FAC updates so far:', int(loaded.optimizer.iterations.numpy()))"
            ),
        ],
    )


if __name__ == "__main__":
    train_and_watch()
    save_load_compare()
