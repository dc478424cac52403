"""Writes the tutorial notebooks (without outputs). Run: python notebooks/make_notebooks.py"""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode
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
                '    """Push towards where the pole is falling: 1 (right) or 0 (left)."""\n'
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
                "from IPython.display import Image, display\n\n"
                "from acktr_lab.plots import show_figure as show\n\n"
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
            new_code_cell("display(Image(pretraining.render_png()))\ndisplay(Image(dashboard.plots.render_png()))"),
            new_markdown_cell(
                "## With and without pretraining\n\n"
                "The same ACKTR run from scratch: same seed, same number of updates. Both curves are the "
                "mean return of the last 20 episodes against the training steps."
            ),
            code(
                """
                from matplotlib.figure import Figure

                from acktr_lab.plots import TrainingPlots

                scratch = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, seed=0)
                scratch_trainer = scratch.trainer(TIMESTEPS)
                scratch_plots = TrainingPlots()
                for _ in range(dashboard.updates):
                    scratch_plots.add(scratch_trainer.step())

                figure = Figure(figsize=(7, 3.5))
                axes = figure.add_subplot()
                for label, plots in (("pretrained, then ACKTR", dashboard.plots), ("ACKTR from scratch", scratch_plots)):
                    axes.plot(plots.episodes.array("timesteps"), plots.episodes.array("smoothed_return"), label=label)
                axes.set_xlabel("ACKTR training steps")
                axes.set_ylabel("mean return (last 20 episodes)")
                axes.legend()
                show(figure)
                """
            ),
        ],
    )


def code(source: str) -> NotebookNode:
    """A code cell from an indented triple-quoted block."""
    return new_code_cell(textwrap.dedent(source).strip("\n"))


def inside_kfac() -> None:
    write(
        "04_inside_kfac.ipynb",
        [
            new_markdown_cell(
                "# Inside K-FAC\n\n"
                "ACKTR's update is a natural-gradient step: it preconditions the gradient `g` with the inverse "
                "of the Fisher matrix\n\n"
                "    F = E_x Σ_y p(y|x) ∇log p(y|x) ∇log p(y|x)ᵀ,\n\n"
                "the curvature of the KL divergence between the model's predictions before and after a step "
                "(`KL ≈ ½ ΔᵀFΔ`). The natural gradient `F⁻¹g` is the steepest-descent direction when a step is "
                "measured by how much it changes the predictions rather than the parameters. F has as many rows "
                "as the network has parameters, so K-FAC keeps only its diagonal blocks, one per layer, and "
                "approximates each by a Kronecker product `A ⊗ G` of two small matrices: `A = E[āāᵀ]` of the "
                "layer's inputs (with a 1 appended for the bias) and `G = E[ggᵀ]` of the gradients at its "
                "outputs.\n\n"
                "This notebook opens that approximation up on a classifier small enough (4 → 8 → 3, 67 "
                "parameters) for the exact Fisher to be computed next to it. Everything is computed by "
                "`acktr_lab.kfac.inspection` on the optimizer ACKTR uses, `KfacOptimizer`."
            ),
            new_code_cell(QUICK),
            code(
                '''
                import io

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure
                from matplotlib.ticker import MaxNLocator

                from acktr_lab.kfac import KfacOptimizer
                from acktr_lab.kfac.inspection import (
                    SoftmaxMlp,
                    angle,
                    exact_fisher,
                    fisher_blocks,
                    fisher_norm,
                    gradient,
                    kfac_direction,
                    kfac_step,
                    layer_slices,
                    loss_after_step,
                    natural_gradient,
                    relative_error,
                )


                from acktr_lab.plots import show_figure as show


                # Three classes from a noisy linear teacher; four input features on very different scales.
                rng = np.random.default_rng(0)
                z = rng.normal(size=(256, 4))
                labels = np.argmax(z @ rng.normal(size=(4, 3)) + 0.5 * rng.normal(size=(256, 3)), axis=1)
                inputs = z * np.array([5.0, 1.0, 0.2, 0.5])


                def setup(**settings):
                    """The classifier 4 → 8 → 3 (tanh) and its K-FAC optimizer (ACKTR's defaults, a 5-update cold
                    start); the training function for optimizer.minimize; the loss."""
                    model = SoftmaxMlp([4, 8, 3], seed=0)
                    optimizer = KfacOptimizer(model.variables, model.layers, cold_iter=5, **settings)
                    return model, optimizer, model.loss_fn(inputs, labels), lambda: model.loss(inputs, labels)
                '''
            ),
            new_markdown_cell(
                "## Train, and look after every update\n\n"
                "Each `optimizer.minimize` is one ACKTR update on the whole data set: the statistics `A`, `G` "
                "are updated from this batch (`G` from labels sampled from the model's own predictions) as a "
                "moving average, both are eigendecomposed, and the step is `(A ⊗ G + δI)⁻¹g` per layer inside a "
                "trust region. The first 5 updates are the cold start: plain momentum SGD while the statistics "
                "accumulate.\n\n"
                "After each update we compute, at the new parameters: each layer's exact Fisher block and K-FAC's "
                "(`fisher_blocks`), the gradient `g`, K-FAC's direction with the optimizer's current inverse "
                "(`kfac_direction`) and the exact natural gradient `(F + δI)⁻¹g`, once with the whole F and once "
                "with only its diagonal blocks (`natural_gradient`), all with the optimizer's damping δ."
            ),
            code(
                """
                STEPS = 30 if QUICK else 200
                model, optimizer, train, loss = setup()
                damping = optimizer.get_hyperparameters()["damping"]
                slices = layer_slices(model.variables, model.layers)
                history = {"loss": [], "scale": [], "expected": [], "running": [], "angles": []}
                for _ in range(STEPS):
                    metrics = optimizer.minimize(train)
                    blocks = fisher_blocks(optimizer, model, inputs)
                    history["expected"].append([relative_error(b.expected, b.exact) for b in blocks])
                    history["running"].append([relative_error(b.running, b.exact) for b in blocks])
                    history["loss"].append(metrics["loss"])
                    history["scale"].append(metrics["trust_region_scale"])  # NaN during the cold start
                    fisher, g = exact_fisher(model, model.variables, inputs), gradient(loss, model.variables)
                    natural = natural_gradient(fisher, g, damping)
                    kfac = kfac_direction(optimizer, g) if metrics["kfac_step"] else g * np.nan
                    block_natural = natural_gradient(fisher, g, damping, slices)
                    history["angles"].append([angle(d, natural) for d in (g, kfac, block_natural)])
                updates = np.arange(1, STEPS + 1)
                print(f"loss {history['loss'][0]:.3f} → {history['loss'][-1]:.3f} in {STEPS} updates")
                """
            ),
            new_markdown_cell(
                "## 1. The two Kronecker factors of a layer\n\n"
                "Left and middle: the optimizer's factors after training. `A` of the first layer is the second "
                "moment of the inputs with a 1 appended (its last row is the mean input, its corner 1): the "
                "feature of scale 5 dominates, the one of scale 0.2 is barely visible. That ill-conditioning is "
                "what makes plain gradient descent slow here, and what `A⁻¹` undoes. `G` is the second moment of "
                "the back-propagated log-likelihood gradients at the layer's outputs.\n\n"
                "Right: the eigenvalues of both factors (as the optimizer decomposed them) and of `A ⊗ G`, whose "
                "eigenvalues are all products `λ_A·λ_G`. The damping δ is added to each product before dividing: "
                "along eigendirections with `λ_A·λ_G ≪ δ` the gradient is merely divided by δ, along those with "
                "`λ_A·λ_G ≫ δ` by `λ_A·λ_G`, the full natural-gradient correction. The output layer's `G` has an "
                "eigenvalue 0 (not drawn): adding the same number to every logit changes no prediction, so the "
                "Fisher is singular along that direction and only the damping keeps the inverse finite."
            ),
            code(
                """
                figure = Figure(figsize=(13, 7), layout="constrained")
                for row, block in enumerate(optimizer.blocks):
                    factors = {"A = E[āāᵀ]": block.input_factor.numpy(), "G = E[ggᵀ]": block.gradient_factor.numpy()}
                    for column, (name, factor) in enumerate(factors.items()):
                        axes = figure.add_subplot(2, 3, 3 * row + column + 1)
                        limit = np.abs(factor).max()
                        image = axes.imshow(factor, cmap="RdBu_r", vmin=-limit, vmax=limit)
                        axes.set_title(f"{block.layer_name}: {name}, {len(factor)}×{len(factor)}")
                        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
                        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
                        figure.colorbar(image, ax=axes, shrink=0.8)
                    eigen_a, eigen_g = block.eigenvalues()
                    axes = figure.add_subplot(2, 3, 3 * row + 3)
                    axes.plot(np.sort(np.outer(eigen_a, eigen_g).ravel())[::-1], ".", color="0.6", label="A ⊗ G")
                    axes.plot(np.sort(eigen_a)[::-1], "o-", label="A")
                    axes.plot(np.sort(eigen_g)[::-1], "s-", label="G")
                    axes.set_yscale("log", nonpositive="mask")  # zero eigenvalues are left out
                    axes.axhline(damping, color="k", linestyle="--", label=f"damping δ = {damping:g}")
                    axes.set(title=f"{block.layer_name}: eigenvalues", xlabel="index (descending)")
                    axes.legend(fontsize="small")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## 2. K-FAC's block against the exact Fisher\n\n"
                "Each row is one layer's diagonal block of F in the block's layout (rows and columns: the "
                "entries of `[W; b]`, row by row), on one colour scale: the exact block; K-FAC's `A ⊗ G` with "
                "both factors computed exactly at the current parameters (`expected_factors`: the error of the "
                "Kronecker structure alone, which treats the inputs and the output gradients as independent); "
                "and `A ⊗ G` from the optimizer's running statistics, what its updates actually use (sampled "
                "labels, averaged over past parameters with `stats_decay`). The colours saturate at the 98th "
                "percentile of the exact block's magnitudes: the first layer's entries span the squared scales "
                "of its inputs, and the few largest would leave the rest white."
            ),
            code(
                """
                kinds = {
                    "exact Fisher block": "exact",
                    "K-FAC, exact factors": "expected",
                    "K-FAC, running statistics": "running",
                }
                figure = Figure(figsize=(13, 8), layout="constrained")
                for row, block in enumerate(blocks):
                    limit = np.percentile(np.abs(block.exact), 98)
                    for column, (title, kind) in enumerate(kinds.items()):
                        matrix = getattr(block, kind)
                        axes = figure.add_subplot(2, 3, 3 * row + column + 1)
                        image = axes.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
                        error = f"\\nrelative error {relative_error(matrix, block.exact):.2f}"
                        axes.set_title(f"{block.layer}: {title}" + ("" if kind == "exact" else error))
                    figure.colorbar(image, ax=axes, shrink=0.8)
                show(figure)
                """
            ),
            new_markdown_cell(
                "The relative error `‖F_kfac − F_exact‖_F / ‖F_exact‖_F` over training. With exact factors it "
                "measures how far the output gradients' statistics depend on the input, which changes as the "
                "predictions sharpen. The running statistics are off in their own ways: sampled labels, and an "
                "average over parameters the network has left behind (`stats_decay = 0.99` remembers about 100 "
                "updates), which matters most while the network changes fast."
            ),
            code(
                """
                expected, running = np.array(history["expected"]), np.array(history["running"])
                figure = Figure(figsize=(11, 3.5), layout="constrained")
                for index, block in enumerate(optimizer.blocks):
                    axes = figure.add_subplot(1, 2, index + 1)
                    axes.plot(updates, expected[:, index], label="K-FAC, exact factors")
                    axes.plot(updates, running[:, index], label="K-FAC, running statistics")
                    axes.axvspan(0, optimizer.cold_iter, color="0.9", label="cold start")
                    axes.set(title=block.layer_name, xlabel="update", ylabel="relative error")
                    axes.set_ylim(bottom=0)
                    axes.legend(fontsize="small")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## 3. Directions: gradient, K-FAC, exact natural gradient\n\n"
                "Left: the angle of each direction to the exact natural gradient `(F + δI)⁻¹g` after every "
                "update. The plain gradient is far from it: the badly scaled inputs tilt it. K-FAC removes much "
                "of that tilt; the block-diagonal natural gradient shows what ignoring the blocks between layers "
                "costs by itself.\n\n"
                "Right: the loss after a step `θ − η·d` along each direction at the final parameters, each "
                "direction normalised to unit length in the Fisher metric, so that a point on the horizontal "
                "axis `√(ΔᵀFΔ)` is the same change of predictions for all (`KL ≈ ½·length²`). The dot is the "
                "step ACKTR takes (`kfac_step`: learning rate and trust region applied)."
            ),
            code(
                """
                directions = {
                    "gradient": g,
                    "K-FAC": kfac,
                    "exact natural gradient": natural,
                    "block-diagonal natural gradient": block_natural,
                }
                figure = Figure(figsize=(12, 4), layout="constrained")
                axes = figure.add_subplot(1, 2, 1)
                names = ["gradient", "K-FAC", "block-diagonal natural gradient"]
                for name, angles in zip(names, np.array(history["angles"]).T):
                    axes.plot(updates, angles, label=name)
                axes.axvspan(0, optimizer.cold_iter, color="0.9", label="cold start")
                axes.set(xlabel="update", ylabel="angle to the exact natural gradient (°)", ylim=(0, 90))
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 2, 2)
                lengths = np.linspace(0.0, 0.5, 21)
                for name, d in directions.items():
                    unit = d / fisher_norm(d, fisher)
                    axes.plot(lengths, loss_after_step(loss, model.variables, unit, lengths), label=name)
                step, scale = kfac_step(optimizer, g)
                after = loss_after_step(loss, model.variables, step, 1.0)[0]
                axes.plot(fisher_norm(step, fisher), after, "ko", label="ACKTR's step")
                axes.set(xlabel="step length in the Fisher metric √(ΔᵀFΔ)", ylabel="loss after the step")
                axes.legend(fontsize="small")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## 4. What `kfac_clip` does to the step\n\n"
                "ACKTR scales K-FAC's direction `V` by `scale = min(1, √(kfac_clip / (lr²·gᵀV)))`, so that its "
                "step `Δ = lr·scale·V` has `ΔᵀF̂Δ = min(lr²·gᵀV, kfac_clip)` in K-FAC's metric `F̂`: `kfac_clip` "
                "caps how far (in KL) one update may move the predictions, whatever the learning rate. Left: the "
                "length of the step in the exact Fisher metric for each `kfac_clip`, at the final parameters. "
                "While the clip binds it grows like `√kfac_clip` (dashed: the cap itself, exact in K-FAC's own "
                "metric `F̂`; the exact metric differs by as much as `F̂` misjudges the curvature along the step); "
                "where the clip does not bind, the learning rate alone sets the step and the curve is flat. "
                "Middle: the loss after that step. Right: the scale during training, 1 where the clip did not "
                "bind (near an optimum the gradient, and with it `gᵀV`, is small). With momentum the optimizer "
                "moves by `lr·(1 − μ)·scale·V` per update, approaching `Δ` as the momentum builds up."
            ),
            code(
                """
                clips = np.logspace(-5, 0, 16)
                steps = [kfac_step(optimizer, g, kfac_clip=clip)[0] for clip in clips]
                figure = Figure(figsize=(13, 3.5), layout="constrained")
                axes = figure.add_subplot(1, 3, 1)
                axes.loglog(clips, [fisher_norm(step, fisher) for step in steps], "o-", label="√(ΔᵀFΔ)")
                axes.loglog(clips, np.sqrt(clips), "k--", label="√kfac_clip")
                axes.set(xlabel="kfac_clip", ylabel="step length in the Fisher metric")
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 3, 2)
                axes.semilogx(clips, [loss_after_step(loss, model.variables, step, 1.0)[0] for step in steps], "o-")
                axes.axhline(float(loss()), color="k", linestyle=":", label="loss now")
                axes.set(xlabel="kfac_clip", ylabel="loss after the step")
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 3, 3)
                axes.plot(updates, history["scale"])
                kfac_clip = optimizer.get_hyperparameters()["kfac_clip"]
                axes.set(xlabel="update", ylabel="trust-region scale", title=f"kfac_clip = {kfac_clip:g}")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## 5. What `damping` trades\n\n"
                "The damping δ regularises the inverse: `(A ⊗ G + δI)⁻¹`. A large δ turns K-FAC into the plain "
                "gradient scaled by `1/δ` (the angle to `g` goes to 0); a small δ trusts the smallest "
                "eigenvalues of `A ⊗ G`, the ones K-FAC gets least right. Left: the angles of K-FAC's direction "
                "for each δ to the gradient and to the exact natural gradient with the same δ. Middle and right: "
                "ACKTR's step for each δ from the final parameters (learning rate and trust region as set), its "
                "length in the exact Fisher metric and the loss after it. A smaller δ makes the step longer in "
                "the exact metric: `V` grows along the directions where `F̂`'s eigenvalues are small, and the "
                "trust region, which measures the step with `F̂`, lets it through where `F̂` underestimates the "
                "curvature. The lower loss after one step thus comes with a larger change of the predictions; "
                "with noisy statistics a small δ also amplifies their noise. The dashed line is the optimizer's "
                "δ."
            ),
            code(
                """
                dampings = np.logspace(-5, 1, 19)
                kfacs = [kfac_direction(optimizer, g, damping=delta) for delta in dampings]
                naturals = [natural_gradient(fisher, g, delta) for delta in dampings]
                steps = [kfac_step(optimizer, g, damping=delta)[0] for delta in dampings]
                figure = Figure(figsize=(13, 3.5), layout="constrained")
                axes = figure.add_subplot(1, 3, 1)
                axes.semilogx(dampings, [angle(v, g) for v in kfacs], "o-", label="K-FAC vs gradient")
                to_natural = [angle(v, n) for v, n in zip(kfacs, naturals)]
                axes.semilogx(dampings, to_natural, "s-", label="K-FAC vs exact natural gradient")
                axes.set(xlabel="damping δ", ylabel="angle (°)")
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 3, 2)
                axes.loglog(dampings, [fisher_norm(step, fisher) for step in steps], "o-", label="√(ΔᵀFΔ)")
                axes.axhline(np.sqrt(kfac_clip), color="k", linestyle=":", label="√kfac_clip")
                axes.set(xlabel="damping δ", ylabel="step length in the Fisher metric")
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 3, 3)
                axes.semilogx(dampings, [loss_after_step(loss, model.variables, step, 1.0)[0] for step in steps], "o-")
                axes.axhline(float(loss()), color="k", linestyle=":", label="loss now")
                axes.set(xlabel="damping δ", ylabel="loss after ACKTR's step")
                axes.legend(fontsize="small")
                for axes in figure.axes:
                    axes.axvline(damping, color="0.5", linestyle="--")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## 6. What `kfac_update` and `stats_update` trade\n\n"
                "The statistics cost an extra backward pass (of the sampled-label loss) per update; the "
                "eigendecompositions cost `O(d_in³ + d_out³)` per layer, which dominates for wide layers. "
                "`kfac_update = N` decomposes only every N-th update and `stats_update = N` updates the "
                "statistics only every N-th update; in between, the optimizer preconditions with an inverse "
                "made at older parameters. Three runs from the same start, with `kfac_clip = 0.01` so that the "
                "parameters, and with them the curvature, move faster than above: the angle of the direction "
                "each update used to the exact natural gradient at that update's parameters, and the loss. "
                "Compare the curves with the work counted in the legend (eigendecompositions, statistics "
                "passes): stale inverses move the directions by some degrees where the curvature changes fast "
                "and hardly change the loss: the trust region keeps each step small, so the curvature changes "
                "little between two decompositions. That is the regime in which `kfac_update > 1` pays, and the "
                "saving grows with the layers' width."
            ),
            code(
                """
                settings = {
                    "every update (ACKTR)": {},
                    "kfac_update=10": {"kfac_update": 10},
                    "kfac_update=10, stats_update=10": {"kfac_update": 10, "stats_update": 10},
                }
                figure = Figure(figsize=(12, 4), layout="constrained")
                left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
                for name, setting in settings.items():
                    model, optimizer, train, loss = setup(kfac_clip=0.01, **setting)
                    angles, losses, decompositions, statistics = [], [], 0, 0
                    for _ in range(STEPS):
                        fisher, g = exact_fisher(model, model.variables, inputs), gradient(loss, model.variables)
                        statistics += optimizer.plan().statistics
                        metrics = optimizer.minimize(train)
                        decompositions += bool(metrics["inverse_refreshed"])
                        used = kfac_direction(optimizer, g)  # with the inverse this update used
                        natural = natural_gradient(fisher, g, damping)
                        angles.append(angle(used, natural) if metrics["kfac_step"] else np.nan)
                        losses.append(metrics["loss"])
                    label = f"{name}: {decompositions} decompositions, {statistics} statistics"
                    left.plot(updates, angles, label=label)
                    right.plot(updates, losses, label=label)
                left.set(xlabel="update", ylabel="angle to the exact natural gradient (°)", ylim=(0, 90))
                right.set(xlabel="update", ylabel="loss")
                right.legend(fontsize="small")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## What to take away\n\n"
                "- K-FAC's `A ⊗ G` is a coarse picture of the Fisher (relative errors of tens of per cent even "
                "with exact factors), yet its direction keeps much of what makes the natural gradient good: it "
                "undoes the scales of the inputs and of the output gradients, layer by layer, for the price of "
                "two small eigendecompositions per layer.\n"
                "- `kfac_clip` bounds the change of the predictions per update; `damping` moves the direction "
                "between the natural gradient and the plain gradient; `kfac_update` and `stats_update` trade "
                "fresh curvature for compute.\n"
                "- The training dashboard of notebook 01 shows the factors' eigenvalue spectra and the trust "
                "region of a live ACKTR run."
            ),
        ],
    )


def hyperparameters_live() -> None:
    write(
        "05_hyperparameters_live.ipynb",
        [
            new_markdown_cell(
                "# Hyperparameters live\n\n"
                "Every live hyperparameter of ACKTR (learning rate and its schedule, `kfac_clip`, the loss "
                "coefficients, `gamma`, `gae_lambda`, `max_grad_norm`) can change between two updates of a "
                "running agent: from a dashboard's sliders or from code with `trainer.set(...)`. Each change is "
                "logged, and the log replays the run exactly. A snapshot lets you branch: run two settings from "
                "the same point and compare them on the same plots."
            ),
            new_code_cell(QUICK),
            new_markdown_cell(
                "## The five learning-rate schedules\n\n"
                "The learning rate of an update is `learning_rate × schedule(progress)`, where progress is the "
                "fraction of the run done (Stable Baselines 2's schedules). ACKTR's default is `linear`."
            ),
            code(
                """
                import io

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure

                from acktr_lab.schedules import SCHEDULES, learning_rate_at


                from acktr_lab.plots import show_figure as show


                progress = np.linspace(0.0, 1.0, 400)
                figure = Figure(figsize=(7, 3))
                axes = figure.add_subplot()
                for name in SCHEDULES:
                    axes.plot(progress, [learning_rate_at(0.25, name, p) for p in progress], label=name)
                axes.set_xlabel("fraction of the run done")
                axes.set_ylabel("learning rate (initial 0.25)")
                axes.legend(fontsize=8)
                show(figure)
                """
            ),
            new_markdown_cell(
                "## Change a run in flight\n\n"
                "A dashboard with four panels: returns, the learning rate (the schedule over the whole run under "
                "the current settings, and the rate each update used), the KL of each update against the trust "
                "region, and the policy's entropy. Press **Run** and move a slider: the next update uses the new "
                "value, the plots mark it, and the edit log under the sliders lists it. The cells below do the "
                "same without clicks."
            ),
            code(
                """
                from acktr_lab import ACKTR
                from acktr_lab.panels import LearningRatePanel, ReturnsPanel, ScalarPanel, TrustRegionPanel
                from acktr_lab.widgets import Dashboard

                TIMESTEPS = 30_000 if QUICK else 300_000
                SEGMENT = 20 if QUICK else 200  # updates of 8 envs × 20 steps

                model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, ent_coef=0.0, seed=0)
                trainer = model.trainer(TIMESTEPS)
                panels = [ReturnsPanel(), LearningRatePanel(), TrustRegionPanel(), ScalarPanel("entropy", "entropy")]
                dashboard = Dashboard(trainer, panels=panels)
                dashboard
                """
            ),
            code(
                """
                dashboard.run_blocking(max_updates=2 * SEGMENT)
                dashboard.controls["kfac_clip"].value = 0.003  # what dragging the slider does
                dashboard.run_blocking(max_updates=SEGMENT)
                trainer.set(lr_schedule="constant", learning_rate=0.1)  # the same from code
                dashboard.run_blocking(max_updates=SEGMENT)
                print(dashboard.status_text)
                for edit in model.edit_log:
                    print(edit)
                """
            ),
            new_markdown_cell(
                "## Replay a run with its edits\n\n"
                "`model.edit_log` holds every change as `Edit(update, timesteps, name, old, new)`; it is saved "
                "with the model too. Passing it back as `edits=` applies the same changes at the same updates, "
                "and with the same seed the run is reproduced exactly."
            ),
            code(
                """
                replay = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, ent_coef=0.0, seed=0)
                replay_trainer = replay.trainer(TIMESTEPS, edits=model.edit_log)
                for _ in range(trainer.updates):
                    replay_trainer.step()
                original, replayed = model.get_parameters(), replay.get_parameters()
                identical = all(np.array_equal(replayed[name], value) for name, value in original.items())
                print(f"after {trainer.updates} updates the replay's parameters are identical: {identical}")
                """
            ),
            new_markdown_cell(
                "## Branch, and compare two settings from the same point\n\n"
                "`trainer.snapshot()` keeps the whole state of the run (parameters, K-FAC statistics, random "
                "state, schedule position, the environments). Run a branch with a much smaller trust region, go "
                "back, continue with the current settings, and overlay the branch on the dashboard's panels."
            ),
            code(
                """
                snapshot = trainer.snapshot()
                trainer.set(kfac_clip=0.0003)
                branch = [trainer.step() for _ in range(2 * SEGMENT)]
                trainer.restore(snapshot)

                dashboard.run_blocking(max_updates=2 * SEGMENT)
                dashboard.compare(branch, label="branch: kfac_clip 0.0003")
                display(Image(dashboard.plots.render_png()))
                """
            ),
            new_markdown_cell(
                "The dashed lines are the branch. A run's history can also be saved as it goes "
                "(`Dashboard(trainer, history='run.jsonl')`, or `HistoryWriter` as a `learn` callback) and "
                "compared later: `dashboard.compare('run.jsonl', label=...)`, or `acktr-lab compare` from a shell."
            ),
        ],
    )


def recurrent_policies() -> None:
    write(
        "08_recurrent_policies.ipynb",
        [
            new_markdown_cell(
                "# Recurrent policies\n\n"
                "A feedforward policy acts on the current observation only: `π(a | o_t)`. A recurrent policy "
                "carries a state from step to step and acts on it: `MlpLstmPolicy` feeds the MLP's features "
                "`x_t` of `o_t` to an LSTM,\n\n"
                "    i, f, o = σ(z_i), σ(z_f), σ(z_o),  u = tanh(z_u),   z = [x_t, h_{t−1}, 1] · W\n"
                "    c_t = f ⊙ c_{t−1} + i ⊙ u,   h_t = o ⊙ tanh(c_t),\n\n"
                "and the policy and value heads read `h_t`. The cell `c` is the memory: the forget gate `f` "
                "keeps it, the input gate `i` writes to it. K-FAC treats `W` as one layer over `[x_t, h_{t−1}]` "
                '(README, "Recurrent policies").\n\n'
                "**The memory task** (`acktr_lab.tasks.CueMemoryEnv`): the first observation shows one of two "
                "cues, `[1, 0, 0]` or `[0, 1, 0]`; then `delay` blank steps `[0, 0, 0]`; then a query "
                "`[0, 0, 1]`. Naming the cue at the query earns 1 and ends the episode; nothing else is "
                "rewarded. The query looks the same for both cues, so a policy without memory is right half "
                "the time."
            ),
            new_code_cell(QUICK),
            new_markdown_cell(
                "## `MlpPolicy` against `MlpLstmPolicy`\n\n"
                "Both train with the same settings on 8 copies of the task (delay 3: episodes of 5 steps). "
                "`n_steps = delay + 2` makes each rollout one whole episode per env: the LSTM's gradient flows "
                "back through the steps of a rollout only, so the cue and the query must fall in the same one. "
                "The curve is the fraction of the last 50 episodes that named the cue (the mean return); the "
                "legend gives each agent's deterministic evaluation on 40 new episodes."
            ),
            code(
                '''
                import io
                from collections import deque

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure

                from acktr_lab import ACKTR
                from acktr_lab.evaluation import evaluate
                from acktr_lab.tasks import CueMemoryEnv
                from acktr_lab.vec_env import make_vec_env


                from acktr_lab.plots import show_figure as show


                def success_rate(reports, window=50):
                    """(timesteps, fraction of the last `window` episodes that named the cue) after each update."""
                    recent, curve = deque(maxlen=window), []
                    for report in reports:
                        recent.extend(report.episode_returns)
                        if recent:
                            curve.append((report.timesteps, np.mean(recent)))
                    return np.array(curve)


                DELAY = 3
                TIMESTEPS = 10_000 if QUICK else 30_000
                SEEDS = (0,) if QUICK else (0, 1, 2)
                POLICIES = {"MlpPolicy": {}, "MlpLstmPolicy": {"policy_kwargs": {"n_lstm": 32}}}

                models, curves = {}, {}
                for policy, kwargs in POLICIES.items():
                    for seed in SEEDS:
                        env = make_vec_env(CueMemoryEnv, n_envs=8, seed=seed, env_kwargs={"delay": DELAY})
                        model = ACKTR(policy, env, n_steps=DELAY + 2, ent_coef=0.0, seed=seed, **kwargs)
                        curves[policy, seed] = success_rate(model.trainer(TIMESTEPS))
                        models[policy, seed] = model

                figure = Figure(figsize=(8, 3.5))
                axes = figure.add_subplot()
                for (policy, seed), curve in curves.items():
                    score = np.mean(evaluate(models[policy, seed], CueMemoryEnv(DELAY), n_episodes=40, seed=1000))
                    color = "C1" if policy == "MlpLstmPolicy" else "C0"
                    label = f"{policy}, seed {seed}: evaluation {score:.0%}"
                    axes.plot(curve[:, 0], curve[:, 1], color=color, alpha=1 - 0.25 * seed, label=label)
                axes.axhline(0.5, color="k", linestyle=":", label="chance")
                axes.set(xlabel="timesteps", ylabel="episodes that named the cue", ylim=(0, 1.05))
                axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
                show(figure)
                '''
            ),
            new_markdown_cell(
                "`MlpPolicy` cannot rise above chance however long it trains: at the query it sees `[0, 0, 1]` "
                "whichever the cue, so its answer is the same for both. Evaluated deterministically it gives "
                "one answer to every query, and its score is the share of the 40 episodes whose cue that "
                "answer happens to name. `MlpLstmPolicy` can reach 1 by carrying the cue in its state."
            ),
            new_markdown_cell(
                "## What the LSTM's state does over an episode\n\n"
                "Acting with a recurrent policy is Stable Baselines 2's loop: pass the state `predict` "
                "returned back in, and mark episode starts with `mask` (the state restarts from zeros):\n\n"
                "```python\n"
                "obs, _ = env.reset()\n"
                "state, start, done = None, True, False\n"
                "while not done:\n"
                "    action, state = model.predict(obs, state=state, mask=[start])\n"
                "    obs, reward, terminated, truncated, _ = env.step(action)\n"
                "    start, done = False, terminated or truncated\n"
                "```\n\n"
                "The state is `[c, h]`, `2·n_lstm` numbers. `record_episode` runs this loop and keeps every "
                "step's state; `split_lstm_state` splits it. Below, one episode of the trained LSTM with "
                "cue 0 (solid) and one with cue 1 (dashed), forced with `reset(options={'cue': ...})`. Left: "
                "the four units of `h` whose values at the query differ most between the two episodes. Right: "
                "the distance between the two episodes' states at each step, for the trained LSTM and for the "
                "same network before training. After the first step both episodes see the same observations, "
                "so any difference between their states is what the network remembers of the cue."
            ),
            code(
                '''
                from acktr_lab.episodes import record_episode, split_lstm_state


                def lstm_states(model):
                    """{cue: (c, h)}, each [steps, n_lstm], over one deterministic episode per cue."""
                    return {
                        cue: split_lstm_state(record_episode(model, CueMemoryEnv(DELAY), options={"cue": cue}).states)
                        for cue in (0, 1)
                    }


                trained = lstm_states(models["MlpLstmPolicy", SEEDS[0]])
                fresh = ACKTR("MlpLstmPolicy", CueMemoryEnv(DELAY), seed=SEEDS[0], **POLICIES["MlpLstmPolicy"])
                untrained = lstm_states(fresh)
                steps, labels = np.arange(DELAY + 2), ["cue", *["blank"] * DELAY, "query"]

                (_, h0), (_, h1) = trained[0], trained[1]
                units = np.argsort(-np.abs(h0[-1] - h1[-1]))[:4]
                figure = Figure(figsize=(12, 3.8), layout="constrained")
                axes = figure.add_subplot(1, 2, 1)
                for k, unit in enumerate(units):
                    axes.plot(steps, h0[:, unit], "o-", color=f"C{k}", label=f"unit {unit}")
                    axes.plot(steps, h1[:, unit], "s--", color=f"C{k}")
                axes.set_xticks(steps, labels)
                axes.set(ylabel="h (trained LSTM)", ylim=(-1, 1), title="solid: cue 0 · dashed: cue 1")
                axes.legend(fontsize="small")
                axes = figure.add_subplot(1, 2, 2)
                for name, states, style in (("trained", trained, "-"), ("before training", untrained, ":")):
                    for part, color in (("c", "C2"), ("h", "C3")):
                        index = "ch".index(part)
                        distance = np.linalg.norm(states[0][index] - states[1][index], axis=1)
                        axes.plot(steps, distance, style, marker="o", color=color, label=f"{part}, {name}")
                axes.set_xticks(steps, labels)
                axes.set(ylabel="‖state(cue 0) − state(cue 1)‖", title="how far apart the two episodes' states are")
                axes.legend(fontsize="small")
                show(figure)
                '''
            ),
            new_markdown_cell(
                "Left: each of these units goes towards +1 for one cue and −1 for the other, and stays there "
                "through the blank steps although the inputs no longer differ; at the query the policy head "
                "reads the cue from them. Right: before training the difference fades within a few steps "
                "(dotted): the untrained gates forget. After training the cell keeps it, and here even adds "
                "to it at every blank step: in `c_t = f ⊙ c_{t−1} + i ⊙ u` the write `i ⊙ u` depends on "
                "`h_{t−1}`, which holds the cue. `h = o ⊙ tanh(c)` is bounded by 1 and saturates.\n\n"
                "`MlpLnLstmPolicy` (layer-normalised LSTM) learns this task too, and `CnnLstmPolicy` and "
                "`CnnLnLstmPolicy` learn it in pictures (`tests/test_recurrent.py`). Longer delays need an "
                "`n_steps` that covers the whole episode, and are harder to learn: the gradient must carry the "
                "reward back over more steps."
            ),
        ],
    )


SB2_EXAMPLE = """
import gym

from stable_baselines.common.policies import MlpPolicy, MlpLstmPolicy, MlpLnLstmPolicy
from stable_baselines.common.vec_env import SubprocVecEnv
from stable_baselines import ACKTR

# multiprocess environment
n_cpu = 4
env = SubprocVecEnv([lambda: gym.make('CartPole-v1') for i in range(n_cpu)])

model = ACKTR(MlpPolicy, env, verbose=1)
model.learn(total_timesteps=25000)
model.save("acktr_cartpole")

del model # remove to demonstrate saving and loading

model = ACKTR.load("acktr_cartpole")

obs = env.reset()
while True:
    action, _states = model.predict(obs)
    obs, rewards, dones, info = env.step(action)
    env.render()
"""

SB2_EXAMPLE_HERE = """
import gymnasium as gym

from acktr_lab import MlpPolicy, MlpLstmPolicy, MlpLnLstmPolicy
from acktr_lab import SubprocVecEnv
from acktr_lab import ACKTR

# multiprocess environment
n_cpu = 4
env = SubprocVecEnv([lambda: gym.make('CartPole-v1') for i in range(n_cpu)])

model = ACKTR(MlpPolicy, env, verbose=1)
model.learn(total_timesteps=5_000 if QUICK else 25_000)
model.save("runs/acktr_cartpole")  # runs/ is git-ignored

del model # remove to demonstrate saving and loading

model = ACKTR.load("runs/acktr_cartpole")

obs, infos = env.reset()
ended = {"terminated": 0, "truncated": 0}
for _ in range(2_000):  # SB2: while True
    action, _states = model.predict(obs)
    obs, rewards, terminated, truncated, infos = env.step(action)
    dones = terminated | truncated  # SB2's dones
    ended["terminated"] += int(terminated.sum())
    ended["truncated"] += int(truncated.sum())
env.close()
print("episodes that ended:", ended)
"""


def side_by_side(titles: tuple[str, str], sources: tuple[str, str]) -> str:
    """A two-column HTML table of code, for a Markdown cell. A blank line would end the
    Markdown HTML block, so blank lines inside the code are written as ``&#10;`` entities."""

    def column(source: str) -> str:
        text = html.escape(source.strip("\n"), quote=False)
        text = re.sub(r"\n(?=\n)", "&#10;", text)
        return f'<td style="text-align: left; vertical-align: top">\n<pre>\n{text}\n</pre>\n</td>'

    header = "".join(f'<th style="text-align: left">{title}</th>' for title in titles)
    return f"<table>\n<tr>{header}</tr>\n<tr>\n{column(sources[0])}\n{column(sources[1])}\n</tr>\n</table>"


def coming_from_sb2() -> None:
    write(
        "09_coming_from_stable_baselines2.ipynb",
        [
            new_markdown_cell(
                "# Coming from Stable Baselines 2\n\n"
                "`acktr_lab` keeps Stable Baselines 2's ACKTR: the class, its constructor arguments and "
                "defaults, the policy names, `learn`, `predict(obs, state, mask)`, `action_probability`, "
                "`pretrain`, `save` and `load`. What changed is around it: environments follow the gymnasium "
                "API instead of gym's, and files hold no pickles. This notebook runs the SB2 documentation "
                "example, then loads and watches an agent that Stable Baselines 2 trained."
            ),
            new_code_cell(QUICK),
            new_markdown_cell(
                "## The documentation example, side by side\n\n"
                "Left, the ACKTR example of the Stable Baselines 2 documentation; right, the code that runs "
                "here (the next cell). It trains less with `ACKTR_LAB_QUICK=1` and steps a "
                "fixed number of times where SB2 looped forever.\n\n"
                + side_by_side(("Stable Baselines 2", "acktr_lab"), (SB2_EXAMPLE, SB2_EXAMPLE_HERE))
            ),
            new_code_cell(SB2_EXAMPLE_HERE.strip("\n")),
            new_markdown_cell(
                "## What changed\n\n"
                "| | Stable Baselines 2 | here |\n"
                "|:---|:---|:---|\n"
                "| environments | `gym` | `gymnasium` (gym's maintained successor); the ids of today's "
                "gymnasium: `Pendulum-v1` for `Pendulum-v0`, `LunarLander-v3` for `-v2` |\n"
                "| imports | `stable_baselines`, `stable_baselines.common.policies`, `.vec_env` | all from "
                "`acktr_lab`, same names |\n"
                "| `reset` | `obs = env.reset()`; seeding by `env.seed(s)` | `obs, infos = env.reset()`; seeding "
                "by `env.reset(seed=s)` |\n"
                "| `step` | `obs, rewards, dones, info` | `obs, rewards, terminated, truncated, infos`; SB2's "
                "`dones` is `terminated or truncated`, element by element |\n"
                "| `info` | a list of dicts, one per env | one dict of arrays: `infos[key][i]`, and "
                "`infos['_' + key][i]` tells whether env `i` set it |\n"
                "| vector envs | SB2's `DummyVecEnv`, `SubprocVecEnv` | gymnasium's `SyncVectorEnv`, "
                "`AsyncVectorEnv` under those names; as in SB2, an env that finishes an episode returns the "
                "first observation of the next one (its last one is in `infos['final_obs']`) |\n"
                "| `env.render()` | draws a window | the mode is chosen when the env is made: "
                "`gym.make(id, render_mode='human')` draws at every step, `'rgb_array'` makes `render()` "
                "return a frame (below) |\n"
                "| saved files | a zip whose objects are cloudpickled | a zip of JSON and NumPy arrays, never "
                "unpickled; Stable Baselines 2 zips and `.pkl` files load as they are (below) |\n\n"
                "The split of `done` matters for learning. `terminated`: the episode reached a terminal "
                "state (the pole fell), and nothing follows it. `truncated`: a time limit cut it (CartPole "
                "stops at 500 steps, Pendulum at 200), and the return would have gone on: ACKTR bootstraps "
                "it with the value of the last observation. Stable Baselines 2 saw only `dones` and treated "
                "time limits as terminal states. The counts printed above tell how the episodes ended: a "
                "pole that fell, or the 500-step limit."
            ),
            new_markdown_cell(
                "## Load an agent trained by Stable Baselines 2\n\n"
                "The rl-baselines-zoo's ACKTR agent for `Pendulum-v0` was trained and saved by Stable "
                "Baselines 2 (TensorFlow 1): a zip of its constructor arguments as JSON, with cloudpickled "
                "objects inside, and its parameters under TensorFlow 1 names (`model/pi_fc0/w:0`, ...). "
                "`ACKTR.load` reads the arguments and arrays and never unpickles anything: the pickled "
                "objects it needs (the policy class, the spaces) it rebuilds from the readable fields stored "
                "beside them (the class name; the spaces' dtype, shape and bounds).\n\n"
                "The file is looked for at `$ACKTR_LAB_SB2_ZIP` if set, else in `shared/fixtures/sb2/` beside "
                "the repository (found from where `acktr_lab` is installed, so it does not depend on the "
                "notebook's working directory). A clone without it gets an agent trained here with the zoo's "
                "settings (plus return normalisation, see the README's Pendulum results) and saved, then "
                "loaded the same way. The next cell says which happened."
            ),
            code(
                """
                import io
                from pathlib import Path

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure

                import acktr_lab

                REPOSITORY = Path(acktr_lab.__file__).resolve().parents[1]
                default = REPOSITORY.parent / "shared" / "fixtures" / "sb2" / "acktr_Pendulum-v0.zip"
                SB2_ZIP = Path(os.environ.get("ACKTR_LAB_SB2_ZIP", default))

                if SB2_ZIP.is_file():
                    path, from_sb2 = SB2_ZIP, True
                    print(f"Loading the Stable Baselines 2 agent {SB2_ZIP}")
                else:
                    zoo = dict(n_envs=4, n_steps=16, learning_rate=0.06, lr_schedule="constant", ent_coef=0.0)
                    trained = ACKTR("MlpPolicy", "Pendulum-v1", normalize_returns=True, seed=0, **zoo)
                    trained.learn(5_000 if QUICK else 100_000)
                    path, from_sb2 = Path("runs/acktr_Pendulum-v1.zip"), False
                    trained.save(path)
                    print(f"No Stable Baselines 2 file at {SB2_ZIP}: trained an agent for "
                          f"{trained.num_timesteps} steps, saved it to {path}, loading it")

                agent = ACKTR.load(path)
                settings = agent.get_hyperparameters()
                print(agent.policy_class.__name__, {k: settings[k] for k in ("n_steps", "learning_rate", "gamma")})
                """
            ),
            new_markdown_cell(
                "## Watch it\n\n"
                "Pendulum renders without a window with `render_mode='rgb_array'`. `episode_frames` "
                "(`acktr_lab.replay`) plays one deterministic episode with `predict` and keeps a frame after "
                "the reset and after every step; `replay_gif` makes every other one a GIF, and seven of them "
                "make the strip below. The pendulum starts at a random angle; the torque is limited to ±2, "
                "too weak to lift it straight up from hanging, so an agent that has learned swings it up and "
                "balances it."
            ),
            code(
                """
                from acktr_lab.replay import episode_frames, replay_gif


                from acktr_lab.plots import show_figure as show


                frames, _ = episode_frames(agent, "Pendulum-v1", seed=3)
                frames = [frame[100:400, 100:400] for frame in frames]  # the middle of the 500×500 pictures
                display(Image(replay_gif(frames, width=None), format="gif"))

                steps = np.linspace(0, len(frames) - 1, 7).round().astype(int)
                figure = Figure(figsize=(14, 2.4), layout="constrained")
                for k, step in enumerate(steps):
                    axes = figure.add_subplot(1, len(steps), k + 1)
                    axes.imshow(frames[step])
                    axes.set_title(f"step {step}")
                    axes.set_axis_off()
                show(figure)
                """
            ),
            new_markdown_cell(
                "## Its returns\n\n"
                "`record_episode` (`acktr_lab.episodes`) plays the same deterministic episode again and keeps "
                "every step. Left: the reward of each step, `−(θ² + 0.1·ω² + 0.001·u²)` with θ the angle from "
                "upright, ω the angular velocity and u the torque: near 0 once the pendulum stands still at the "
                "top. Right: the returns of episodes with sampled actions (as the zoo evaluated it), against an "
                "untrained `MlpPolicy`; for the Stable Baselines 2 agent, the band is the zoo's published result."
            ),
            code(
                """
                from acktr_lab.episodes import record_episode

                episode = record_episode(agent, "Pendulum-v1", seed=3)  # the episode above, step by step
                N_EPISODES = 4 if QUICK else 20
                untrained = ACKTR("MlpPolicy", "Pendulum-v1", seed=0)
                returns = {
                    name: [record_episode(model, "Pendulum-v1", seed=100 + i, deterministic=False).total_return
                           for i in range(N_EPISODES)]
                    for name, model in (("loaded agent", agent), ("untrained", untrained))
                }

                figure = Figure(figsize=(12, 3.5), layout="constrained")
                axes = figure.add_subplot(1, 2, 1)
                axes.plot(episode.rewards)
                axes.set(xlabel="step", ylabel="reward", title=f"the episode above: return {episode.total_return:.0f}")
                axes = figure.add_subplot(1, 2, 2)
                for x, (name, values) in enumerate(returns.items()):
                    axes.plot(np.full(len(values), x), values, "o", alpha=0.5)
                    axes.plot([x - 0.2, x + 0.2], [np.mean(values)] * 2, "k-")
                if from_sb2:
                    axes.axhspan(-213.8 - 137.9, -213.8 + 137.9, color="C2", alpha=0.15,
                                 label="published (750 episodes): −213.8 ± 137.9")
                    axes.legend(fontsize="small", loc="lower right")
                axes.set_xticks(range(len(returns)), list(returns))
                axes.set(xlim=(-0.6, len(returns) - 0.4), ylabel=f"return ({N_EPISODES} episodes; bar: mean)")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## Older `.pkl` files, and agents trained with `VecNormalize`\n\n"
                "Earlier Stable Baselines 2 releases saved a pickle of `(data, params)`; the rl-baselines-zoo "
                "still ships its CartPole-v1, Acrobot-v1, MountainCar-v0 and LunarLander-v2 ACKTR agents so. "
                "A pickle is a program that may name any function to call, so `ACKTR.load` reads it with a "
                "restricted unpickler: plain data, numeric arrays, the gym spaces and SB2 policy classes it "
                "knows, and nothing else (any other name is refused before anything runs).\n\n"
                "The zoo trained Acrobot with `VecNormalize`, and saved the running mean and variance of the "
                "observations beside the model (`Acrobot-v1/obs_rms.pkl`). `load` finds them there and puts "
                "them in the policy's own observation normalisation, `clip((obs − mean)/√(var + 10⁻⁸), −10, 10)`, "
                "as SB2 applied them. The repository keeps this agent under `tests/data/sb2_zoo`. Below: what "
                "the statistics do to each observation entry (the bars span mean ± one standard deviation, "
                "mapped to ±1), and the agent's returns."
            ),
            code(
                """
                from acktr_lab.evaluation import evaluate

                ZOO_PKL = REPOSITORY / "tests" / "data" / "sb2_zoo" / "acktr" / "Acrobot-v1.pkl"
                if ZOO_PKL.is_file():
                    acrobot = ACKTR.load(ZOO_PKL)
                    statistics = acrobot.observation_normalizer.state()
                    print(f"{acrobot.policy_class.__name__}, n_steps={acrobot.n_steps}, "
                          f"normalize_observations={acrobot.normalize_observations}, "
                          f"statistics over {statistics['count']:,.0f} observations")
                    acrobot_returns = evaluate(acrobot, "Acrobot-v1", n_episodes=3 if QUICK else 10, seed=0)

                    figure = Figure(figsize=(12, 3), layout="constrained")
                    axes = figure.add_subplot(1, 2, 1)
                    names = ["cos θ1", "sin θ1", "cos θ2", "sin θ2", "ω1", "ω2"]
                    std = np.sqrt(statistics["var"])
                    axes.bar(names, 2 * std, bottom=statistics["mean"] - std, color="C0", alpha=0.6)
                    axes.set_ylim(min(statistics["mean"] - std) - 0.3, max(statistics["mean"] + std) + 0.3)
                    axes.set(ylabel="raw observation", title="mean ± std of each entry (normalised: 0 ± 1)")
                    axes = figure.add_subplot(1, 2, 2)
                    axes.plot(acrobot_returns, "o")
                    axes.set_xticks(range(len(acrobot_returns)))
                    axes.axhline(-91.3, color="C2", label="published: −91.3 ± 32.5")
                    axes.set(xlabel="episode (deterministic)", ylabel="return", ylim=(-500, 0))
                    axes.legend(fontsize="small")
                    show(figure)
                else:
                    print(f"{ZOO_PKL} is not here (acktr_lab installed without its repository)")
                """
            ),
        ],
    )


def continuous_control() -> None:
    write(
        "06_continuous_control.ipynb",
        [
            new_markdown_cell(
                "# Continuous control\n\n"
                "For a `Box` action space the policy is a diagonal Gaussian, `a ~ N(μ(s), diag(σ²))`, with a "
                "state-independent `log σ` that ACKTR trains with everything else (it belongs to no K-FAC "
                "layer, so it takes its plain gradient, `F = I`, inside the same trust region). Exploration is "
                "`σ`: watch it shrink "
                "as the policy becomes sure of itself.\n\n"
                "Three tasks: Pendulum-v1 (classic control), LunarLanderContinuous-v3 (Box2D) and Hopper-v5 "
                "(MuJoCo, the family of the ACKTR paper's continuous results). Each trains with its preset "
                "(`acktr_lab.presets`, the rl-baselines-zoo settings for today's gymnasium ids)."
            ),
            new_code_cell(QUICK),
            code(
                """
                import io

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure

                from acktr_lab import ACKTR
                from acktr_lab.evaluation import evaluate
                from acktr_lab.extras import missing_extra
                from acktr_lab.panels import ReturnsPanel, ScalarPanel, TrustRegionPanel
                from acktr_lab.plots import TrainingPlots
                from acktr_lab.presets import get_preset
                from acktr_lab.replay import episode_frames, replay_gif


                def panels() -> list:
                    return [
                        ReturnsPanel(),
                        ScalarPanel("log_std", "Gaussian log σ (mean over actions)", "train/log_std", color="C4"),
                        TrustRegionPanel(),
                        ScalarPanel("explained_variance", "explained variance", clip=(-1.0, 1.0), color="C2"),
                    ]


                def train(model: ACKTR, timesteps: int) -> TrainingPlots:
                    trainer = model.trainer(timesteps)
                    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve, panels=panels())
                    plots.extend(trainer)
                    return plots


                def preset_model(env_id: str, seed: int = 0) -> ACKTR:
                    preset = get_preset(env_id)
                    return ACKTR(preset.policy, preset.make_env(seed=seed), seed=seed, **preset.acktr_kwargs())
                """
            ),
            new_markdown_cell(
                "## Pendulum-v1\n\n"
                "Swing the pendulum up and hold it: the reward is `−(θ² + 0.1·θ̇² + 0.001·u²)` per step, so a "
                "random policy scores about −1200 per 200-step episode and a good one about −150. The preset "
                "normalises the returns (without it ACKTR barely moves for a million steps: the critic's share of "
                "the trust region is too small for returns of order −600)."
            ),
            code(
                """
                PENDULUM_STEPS = 20_000 if QUICK else 1_000_000
                pendulum = preset_model("Pendulum-v1")
                pendulum_plots = train(pendulum, PENDULUM_STEPS)
                display(Image(pendulum_plots.render_png()))
                returns = evaluate(pendulum, "Pendulum-v1", 10, seed=100)
                print(f"after {PENDULUM_STEPS:,} steps: mean return {np.mean(returns):.0f} over 10 episodes")
                """
            ),
            new_markdown_cell("One deterministic episode, rendered off-screen (`acktr_lab.replay`):"),
            code(
                """
                frames, episode_return = episode_frames(pendulum, "Pendulum-v1", seed=100)
                print(f"return {episode_return:.0f} over {len(frames) - 1} steps")
                Image(data=replay_gif(frames, width=240))
                """
            ),
            new_markdown_cell(
                "## LunarLanderContinuous-v3 and observation normalisation\n\n"
                "Land between the flags with two continuous engines. The eight observations live on very "
                "different scales (positions, velocities, an angle, two leg-contact flags), so the preset "
                "normalises them: the policy sees `clip((x − μ)/σ, −10, 10)` with the running mean and variance "
                "(gymnasium's `RunningMeanStd`), kept with the model so that `predict` after `load` applies them."
            ),
            code(
                """
                LANDER_STEPS = 20_000 if QUICK else 2_000_000
                if (hint := missing_extra("box2d")) is not None:
                    raise ModuleNotFoundError(hint)  # the pip line that adds Box2D
                lander = preset_model("LunarLanderContinuous-v3")
                lander_plots = train(lander, LANDER_STEPS)
                display(Image(lander_plots.render_png()))

                statistics = lander.observation_normalizer.statistics
                names = ["x", "y", "vx", "vy", "angle", "ang. vel.", "left leg", "right leg"]
                figure = Figure(figsize=(7, 2.6))
                axes = figure.add_subplot()
                axes.bar(names, np.sqrt(statistics.var), color="C0")
                axes.set_yscale("log")
                axes.set_ylabel("running std of the raw observation")
                axes.tick_params(labelsize=8)
                png = io.BytesIO()
                figure.savefig(png, format="png", bbox_inches="tight")
                Image(png.getvalue())
                """
            ),
            new_markdown_cell(
                "## Hopper-v5 (MuJoCo)\n\n"
                "The ACKTR paper's continuous-control results are on MuJoCo. The rl-baselines-zoo's ACKTR "
                "settings for MuJoCo (tuned on HalfCheetah): one env, 2048 steps per update, learning rate 0.2 "
                "held constant, a 256 × 256 network, observation and return normalisation. MuJoCo is an extra; "
                "the cell says how to install it where it is missing."
            ),
            code(
                """
                HOPPER_STEPS = 4_096 if QUICK else 1_000_000
                hint = missing_extra("mujoco")
                if hint is not None:
                    print(hint)
                else:
                    hopper = ACKTR(
                        "MlpPolicy", "Hopper-v5", seed=0, n_steps=2048, learning_rate=0.2, lr_schedule="constant",
                        max_grad_norm=10.0, ent_coef=0.0, normalize_observations=True, normalize_returns=True,
                        policy_kwargs=dict(net_arch=[256, 256]),
                    )
                    hopper_plots = train(hopper, HOPPER_STEPS)
                    display(Image(hopper_plots.render_png()))
                    returns = evaluate(hopper, "Hopper-v5", 5, seed=100)
                    print(f"after {HOPPER_STEPS:,} steps: mean return {np.mean(returns):.0f} over 5 episodes")
                """
            ),
            new_markdown_cell(
                "On 2 CPU cores a million Hopper steps take about ten minutes. For the long runs, the command line "
                "does the same with a progress bar and saves the model, its plots, its history and a replay: "
                "`acktr-lab train LunarLanderContinuous-v3` (5M steps, the zoo's budget)."
            ),
        ],
    )


def atari() -> None:
    write(
        "07_atari_cnn.ipynb",
        [
            new_markdown_cell(
                "# Atari with `CnnPolicy`\n\n"
                "ACKTR's Atari results use the Nature CNN (three convolutions and a 512-unit layer) on stacks of "
                "four 84 × 84 grey frames. K-FAC treats a convolution as a dense layer applied at every output "
                "position (Grosse & Martens' KFC): `A` is the covariance of the input patches, `G` that of the "
                "gradients at the output positions. Stable Baselines 2's `approx_t2` builds both from each "
                "example's mean patch and summed gradients instead: statistics about `T` times cheaper for a "
                "layer with `T` output positions.\n\n"
                "Pong-v5 comes from `ale-py` (which ships the ROMs) through gymnasium's `AtariPreprocessing` and "
                "frame stacking, as the preset builds it (`acktr_lab.presets`)."
            ),
            new_code_cell(QUICK),
            code(
                """
                import io

                import numpy as np
                from IPython.display import Image, display
                from matplotlib.figure import Figure

                from acktr_lab import ACKTR
                from acktr_lab.extras import missing_extra
                from acktr_lab.presets import get_preset

                if (hint := missing_extra("atari")) is not None:
                    raise ModuleNotFoundError(hint)  # the pip line that adds ale-py and OpenCV


                from acktr_lab.plots import show_figure as show


                preset = get_preset("ALE/Pong-v5")
                N_ENVS = 4 if QUICK else 16
                env = preset.make_env(n_envs=N_ENVS, seed=0)
                observations, _ = env.reset(seed=0)
                for _ in range(30):
                    observations, *_ = env.step(env.action_space.sample())
                print(env.single_observation_space)  # channels first: (stacked frames, height, width)
                figure = Figure(figsize=(8, 2.2))
                for k, frame in enumerate(observations[0]):
                    axes = figure.add_subplot(1, 4, k + 1)
                    axes.imshow(frame, cmap="gray")
                    axes.set_title(f"frame t−{3 - k}", fontsize=8)
                    axes.axis("off")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## A short run on CPU\n\n"
                "The preset's settings (`async_eigen_decomp`: the factors are decomposed on a worker thread, so "
                "no update waits for the 3137 × 3137 factor of the 512-unit layer after the first). The run is "
                "far too short to learn Pong; it shows what an update costs and what the curvature looks like."
            ),
            code(
                """
                UPDATES = 14 if QUICK else 500
                model = ACKTR("CnnPolicy", env, seed=0, **preset.acktr_kwargs())
                reports = list(model.trainer(N_ENVS * model.n_steps * UPDATES))
                # steady speed: the last updates' rollout and update times (the first ones compile)
                milliseconds = np.median([r.metrics["cost/rollout_ms"] + r.metrics["cost/update_ms"] for r in reports[-3:]])
                fps = N_ENVS * model.n_steps / (milliseconds / 1000)
                print(f"{UPDATES} updates of {N_ENVS} envs × {model.n_steps} steps: {fps:.0f} steps/s on this machine")
                """
            ),
            new_markdown_cell(
                "## The Fisher factors of the convolutions\n\n"
                "The eigenvalues of each layer's `A` (inputs) and `G` (output gradients), largest first. The "
                "steep fall of the spectra is why damping matters: the inverse multiplies directions along the "
                "small eigenvalues by up to `1/damping`."
            ),
            code(
                """
                optimizer = model.learner.optimizer
                optimizer.wait_for_inverse(timeout=120)  # the asynchronous decomposition in progress
                figure = Figure(figsize=(9, 3.2))
                for index, factor in enumerate(("A (input patches)", "G (output gradients)")):
                    axes = figure.add_subplot(1, 2, index + 1)
                    for layer, values in optimizer.eigenvalues().items():
                        spectrum = np.sort(values[index])[::-1]
                        spectrum = spectrum[spectrum > 0]
                        axes.loglog(np.arange(1, spectrum.size + 1), spectrum, label=layer)
                    axes.set_title(f"eigenvalues of {factor}", fontsize=9)
                    axes.set_xlabel("rank", fontsize=8)
                    axes.legend(fontsize=7)
                show(figure)
                """
            ),
            new_markdown_cell(
                "## What `approx_t2` buys\n\n"
                "The same first updates with and without `approx_t2`: every update during the cold start takes "
                "curvature statistics, so its wall time shows their cost (`cost/update_ms`, reported for every "
                "update)."
            ),
            code(
                """
                costs = {}
                for approx_t2 in (False, True):
                    probe = ACKTR("CnnPolicy", preset.make_env(n_envs=N_ENVS, seed=0), seed=0, approx_t2=approx_t2,
                                  **preset.acktr_kwargs())
                    timed = list(probe.trainer(N_ENVS * probe.n_steps * 6))[1:]  # the first update compiles
                    costs[f"approx_t2={approx_t2}"] = np.median([r.metrics["cost/update_ms"] for r in timed])
                figure = Figure(figsize=(5, 2.5))
                axes = figure.add_subplot()
                axes.barh(list(costs), list(costs.values()), color=["C0", "C1"])
                axes.set_xlabel("median update (ms), statistics included")
                show(figure)
                """
            ),
            new_markdown_cell(
                "## Running it long\n\n"
                "From a shell, with the zoo's budget (5M steps, 32 envs) and a progress bar; the model, its "
                "plots, its history and a replay are saved in `runs/`:\n\n"
                "    acktr-lab train ALE/Pong-v5\n\n"
                "At the speed measured above (with this notebook's envs; more envs per update run faster), the "
                "time that takes on this machine:"
            ),
            code(
                """
                print(f"5M steps at {fps:.0f} steps/s: about {5_000_000 / fps / 3600:.1f} hours")
                """
            ),
        ],
    )


def sweeps() -> None:
    write(
        "10_sweeps.ipynb",
        [
            new_markdown_cell(
                "# Sweeps\n\n"
                "ACKTR's hyperparameters are known to be fragile: users had to move `kfac_clip` by 10× "
                "(gd-zhang/ACKTR#2), and \"the higher the learning rate the higher the damping must be\" "
                "(tensorflow/kfac#12). One run per setting says little: RL results need seeds. "
                "`acktr_lab.sweep` runs many ACKTR trials on Ray Tune, the same code on this laptop and on a "
                "cluster: a grid or random search, ASHA's early stopping, and population-based training "
                "(PBT), which mutates the live hyperparameters and copies the best trials' checkpoints, "
                "K-FAC statistics included.\n\n"
                "This notebook runs a grid over `kfac_clip` × seeds on CartPole-v1, then PBT on the same "
                "budget, and compares them on one aggregate plot. It needs the `sweep` extra "
                "(`pip install 'acktr_lab[sweep]'`)."
            ),
            new_code_cell(QUICK),
            code(
                """
                from acktr_lab.plots import show_figure
                from acktr_lab.sweep import run, start_ray

                start_ray(num_cpus=2)  # a local Ray for this notebook: one trial per CPU

                TIMESTEPS = 1_600 if QUICK else 100_000
                SEEDS = [0] if QUICK else [0, 1, 2, 3, 4]
                CLIPS = [0.001, 0.01] if QUICK else [0.0001, 0.001, 0.01]
                SHARED = dict(fixed={"n_envs": 8}, timesteps=TIMESTEPS, storage_path="runs/sweeps",
                              report_every=2 if QUICK else 10, eval_episodes=2 if QUICK else 20)
                print(f"{len(CLIPS)} kfac_clip values × {len(SEEDS)} seeds, {TIMESTEPS:,} steps per trial")
                """
            ),
            new_markdown_cell(
                "## A grid, watched live\n\n"
                "`SweepDashboard` is a Ray Tune callback: Tune hands it every result as it arrives. It draws "
                "each trial's learning curve (the mean return of its last 100 episodes) coloured by "
                "`kfac_clip`, ranks the trials, and shows where the best one's checkpoints came from. Pick a "
                "trial and press **Stop trial** to end it early. `start` runs the sweep in a background "
                "thread, so the kernel stays free while it runs; the next cell waits for the end."
            ),
            code(
                """
                from acktr_lab.widgets.sweep import SweepDashboard

                dashboard = SweepDashboard(color_by="kfac_clip")
                display(dashboard)
                future = dashboard.start(env="CartPole-v1", space={"kfac_clip": CLIPS}, seeds=SEEDS,
                                         name="grid_kfac_clip", **SHARED)
                """
            ),
            code(
                """
                grid = future.result()  # wait for the sweep to end
                show_figure(dashboard.figure(dashboard.monitor.leaderboard()))
                columns = ["kfac_clip", "seed", "status", "timesteps", "eval/mean_return"]
                grid.table[columns].sort_values("eval/mean_return", ascending=False)
                """
            ),
            new_markdown_cell(
                "`grid.table` has one row per trial; `grid.best_model()` loads the best trial's final model "
                "(its zip, K-FAC state included) and `grid.histories` holds every trial's reports.\n\n"
                "## Population-based training on the same budget\n\n"
                "As many trials, as many steps each. Every quarter of the budget the population stops; the "
                "worse trials continue from a better trial's checkpoint (parameters and K-FAC statistics), "
                "with its `kfac_clip` multiplied by 0.8 or 1.2 or drawn anew. `kfac_clip` is a live "
                "hyperparameter: the trainer takes the new value at the next update, as a slider would set it. "
                "`scheduler=\"pb2\"` runs PB2 instead: the same exploits, with the new value chosen by a "
                "Gaussian-process bandit between the searched bounds."
            ),
            code(
                """
                from ray import tune

                pbt = run("CartPole-v1", {"kfac_clip": tune.loguniform(min(CLIPS), max(CLIPS))}, seeds=SEEDS,
                          search="random", num_samples=len(CLIPS), scheduler="pbt",
                          perturbation_interval=TIMESTEPS // 4, name="pbt_kfac_clip", **SHARED)
                for trial, history in pbt.histories.items():
                    parents = history["pbt/parent"].fillna("")
                    exploits = history[(parents != "") & (parents != trial)].drop_duplicates("pbt/parent_timesteps")
                    moves = [f"{row['pbt/parent']} at {row['pbt/parent_timesteps']:,.0f}" for _, row in exploits.iterrows()]
                    print(f"{trial}: continued from {', '.join(moves) if moves else 'its own checkpoints only'}; "
                          f"final kfac_clip {history['config/kfac_clip'].iloc[-1]:.2g}")
                """
            ),
            new_markdown_cell(
                "## Grid against PBT, across seeds\n\n"
                "Each trial's final deterministic evaluation. Left, the interquartile mean (the mean of the "
                "middle half of the runs, robust to one lucky or unlucky seed) with its 95% stratified "
                "bootstrap interval; right, the performance profile: the fraction of runs scoring above each "
                "threshold (rliable's estimators, `acktr_lab.aggregate`)."
            ),
            code(
                """
                from acktr_lab.aggregate import aggregate_figure

                groups = {f"grid, {label}": scores for label, scores in grid.scores().items()}
                groups["PBT, every trial"] = pbt.table["eval/mean_return"].dropna().to_numpy()
                show_figure(aggregate_figure(groups, title=f"CartPole-v1 after {TIMESTEPS:,} steps"))
                """
            ),
            new_markdown_cell(
                "## The same sweep on a cluster\n\n"
                "Start Ray on the cluster (`ray start --head` on one machine, `ray start --address=HEAD:6379` "
                "on the others, each with `pip install 'acktr_lab[sweep]'`), then point the same call at it:\n\n"
                "```python\n"
                "grid = run(\"CartPole-v1\", {\"kfac_clip\": CLIPS}, seeds=SEEDS, address=\"ray://HEAD:10001\", "
                "storage_path=\"s3://bucket/sweeps\", **SHARED)\n"
                "```\n\n"
                "Checkpoints are ordinary model zips in `storage_path`; use a folder every node sees, or "
                "cloud storage (`s3://…`), so that a trial restored on another node finds them."
            ),
        ],
    )


if __name__ == "__main__":
    train_and_watch()
    save_load_compare()
    pretraining()
    inside_kfac()
    hyperparameters_live()
    continuous_control()
    atari()
    recurrent_policies()
    coming_from_sb2()
    sweeps()
