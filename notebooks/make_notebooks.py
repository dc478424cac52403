"""Writes the tutorial notebooks (without outputs). Run: python notebooks/make_notebooks.py"""

from __future__ import annotations

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
                "import io\n\n"
                "from IPython.display import Image, display\n\n\n"
                "def show(figure):\n"
                '    """Display a matplotlib Figure as a PNG image."""\n'
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
            new_code_cell("display(Image(pretraining.render_png()))\ndisplay(Image(dashboard.plots.render_png()))"),
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


                def show(figure):
                    """Display a matplotlib Figure as a PNG image."""
                    buffer = io.BytesIO()
                    figure.savefig(buffer, format="png", bbox_inches="tight")
                    display(Image(buffer.getvalue()))


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


                def show(figure: Figure) -> Image:
                    # a plain Figure (no pyplot) has no notebook display of its own: show it as a PNG
                    png = io.BytesIO()
                    figure.savefig(png, format="png", bbox_inches="tight")
                    return Image(png.getvalue())


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


if __name__ == "__main__":
    train_and_watch()
    save_load_compare()
    pretraining()
    inside_kfac()
    hyperparameters_live()
