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
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"  # nbformat's ids are random: regenerating would change every file
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
                "# rl-baselines-zoo settings for CartPole: 8 envs, no entropy bonus;\n"
                "# everything else is ACKTR's default.\n"
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
                "The dashboard's controls call `trainer.set(...)`; you can too. `dashboard.step()` is the "
                "**Step** button: one update, and the plots and sliders above follow. Every report records "
                "the values it used, so the plots mark where a change happened."
            ),
            new_code_cell(
                "trainer.set(kfac_clip=0.002, lr_schedule='constant')\n"
                "report = dashboard.step()\n"
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
            new_markdown_cell(
                "## Outside notebooks\n\n"
                "The same plots can be written to a PNG (shown below as a static picture, which a saved "
                "notebook keeps even where widgets are not rendered), and the agent to a zip."
            ),
            new_code_cell(
                "from pathlib import Path\n\n"
                "from IPython.display import Image\n\n"
                "Path('runs').mkdir(exist_ok=True)\n"
                "model.save('runs/cartpole_acktr.zip')\n"
                "Image(filename=dashboard.plots.save('runs/cartpole_dashboard.png'))"
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
                "import io\n\n"
                "import numpy as np\n"
                "from IPython.display import Image\n"
                "from matplotlib.figure import Figure\n\n"
                "from acktr_lab import ACKTR\n"
                "from acktr_lab.evaluation import evaluate\n\n"
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
                "# a plain Figure (no pyplot) has no notebook display of its own: show it as a PNG\n"
                "png = io.BytesIO()\n"
                "figure.savefig(png, format='png', bbox_inches='tight')\n"
                "Image(png.getvalue())"
            ),
            new_code_cell(
                "model, _ = agents[0.001]\n"
                "model.save('runs/cartpole_a.zip')\n"
                "loaded = ACKTR.load('runs/cartpole_a.zip', env='CartPole-v1')\n\n"
                "obs = np.random.default_rng(0).normal(0, 0.5, size=(64, 4)).astype(np.float32)\n"
                "actions = model.predict(obs, deterministic=True)[0]\n"
                "same = np.array_equal(actions, loaded.predict(obs, deterministic=True)[0])\n"
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


def pretraining() -> None:
    write(
        "03_pretraining.ipynb",
        [
            new_markdown_cell(
                "# Pretrain by behaviour cloning, then train with ACKTR\n\n"
                "**Behaviour cloning** treats demonstrations as a supervised data set: from expert "
                "transitions (s, a*) it fits the policy by minimising the negative log-likelihood of the "
                "expert's action, `L = -mean log π(a* | s)` (the mean squared error of the deterministic "
                "action for continuous actions), with Adam. It is Stable Baselines' `model.pretrain(dataset, "
                "n_epochs, learning_rate)`. The episodes are split into a training and a validation set, so "
                "the validation loss tells how well the cloned policy generalises to episodes it never saw.\n\n"
                "A cloned policy only knows the states the expert visited: small mistakes take it to states "
                "with no demonstrations, and errors compound. Reinforcement learning then fixes what cloning "
                "could not, starting from a policy that already does something sensible. Note that cloning "
                "trains the policy, not the value function, which ACKTR learns from its first rollouts."
            ),
            new_code_cell(QUICK),
            new_markdown_cell(
                "## Record demonstrations\n\n"
                "The expert is a hand-written controller for CartPole: push the cart towards the side the "
                "pole is falling to (pole angle plus half its angular velocity). It balances the pole for "
                "the full 500 steps. `generate_expert_traj` records its episodes in Stable Baselines 2's "
                "`.npz` format."
            ),
            new_code_cell(
                "from pathlib import Path\n\n"
                "from acktr_lab.expert import ExpertDataset, generate_expert_traj\n\n\n"
                "def controller(obs):\n"
                "    \"\"\"Push towards where the pole is falling: 1 (right) or 0 (left).\"\"\"\n"
                "    return int(obs[2] + 0.5 * obs[3] > 0)\n\n\n"
                "Path('runs').mkdir(exist_ok=True)\n"
                "N_EPISODES = 5 if QUICK else 25\n"
                "data = generate_expert_traj(controller, 'runs/cartpole_expert', env='CartPole-v1', "
                "n_episodes=N_EPISODES, seed=0)\n"
                "print('expert returns:', data['episode_returns'])"
            ),
            new_markdown_cell(
                "`ExpertDataset` loads the archive, splits its episodes into training and validation sets "
                "and serves shuffled minibatches. Its plot is the histogram of the expert's returns."
            ),
            new_code_cell(
                "import io\n\n"
                "from IPython.display import Image, display\n\n\n"
                "def show(figure):\n"
                "    \"\"\"Display a matplotlib Figure as a PNG image.\"\"\"\n"
                "    buffer = io.BytesIO()\n"
                "    figure.savefig(buffer, format='png', bbox_inches='tight')\n"
                "    display(Image(buffer.getvalue()))\n\n\n"
                "dataset = ExpertDataset(expert_path='runs/cartpole_expert.npz', train_fraction=0.8, "
                "batch_size=64, seed=0)\n"
                "show(dataset.plot())"
            ),
            new_markdown_cell(
                "## The pretraining dashboard\n\n"
                "Pick a dataset (or load another `.npz` file by its path), choose the number of epochs and "
                "the learning rate, and press **Pretrain**: the training and validation losses are drawn "
                "after every epoch while the kernel stays free (**Stop** ends the run after the current "
                "epoch). **Evaluate** runs deterministic episodes of the policy and plots their mean ± std "
                "next to the expert's return. **Continue with ACKTR** opens the training dashboard below, "
                "on the same model; its last panel keeps the behaviour-cloning losses."
            ),
            new_code_cell(
                "from acktr_lab import ACKTR\n"
                "from acktr_lab.widgets import PretrainDashboard\n\n"
                "TIMESTEPS = 20_000 if QUICK else 200_000\n"
                "model = ACKTR('MlpPolicy', 'CartPole-v1', n_envs=8, seed=0)\n"
                "pretraining = PretrainDashboard(\n"
                "    model,\n"
                "    datasets={'hand-written controller': dataset},\n"
                "    eval_env='CartPole-v1',\n"
                "    total_timesteps=TIMESTEPS,\n"
                "    n_epochs=30,\n"
                "    learning_rate=1e-3,\n"
                ")\n"
                "pretraining"
            ),
            new_markdown_cell(
                "## The same without clicks\n\n"
                "The buttons call these methods; run the cells to do it from code (this is also what an "
                "executed, headless notebook does). First the untrained policy, for comparison:"
            ),
            new_code_cell("print(pretraining.evaluate())"),
            new_code_cell(
                "reports = pretraining.pretrain_blocking(n_epochs=5 if QUICK else 30, learning_rate=1e-3)\n"
                "last = reports[-1]\n"
                "print(f'epoch {last.epoch}: train loss {last.train_loss:.3f}, validation loss {last.val_loss:.3f}')\n"
                "print(pretraining.evaluate())"
            ),
            new_markdown_cell(
                "## Continue with ACKTR\n\n"
                "`continue_training()` builds `model.trainer(TIMESTEPS)` and shows its dashboard inside the "
                "pretraining widget above. Press **Run** there, or train a first part from code. Expect the "
                "return to dip during the first updates: the critic starts from scratch, so the first "
                "advantage estimates are poor and the large natural-gradient steps move the cloned policy "
                "away from the expert before the value function catches up."
            ),
            new_code_cell(
                "dashboard = pretraining.continue_training()\n"
                "dashboard.run_blocking(max_updates=20 if QUICK else 300)\n"
                "print(dashboard.status_text)\n"
                "print(pretraining.evaluate())"
            ),
            new_markdown_cell(
                "## The final plots\n\n"
                "The behaviour-cloning losses and every evaluation (before pretraining, after it, and during "
                "ACKTR), then the training dashboard's plots."
            ),
            new_code_cell(
                "display(Image(pretraining.render_png()))\n"
                "display(Image(dashboard.plots.render_png()))"
            ),
        ],
    )


if __name__ == "__main__":
    train_and_watch()
    save_load_compare()
    pretraining()
