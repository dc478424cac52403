"""Cost of one K-FAC update against one plain RMSprop update (A2C's optimizer) on the same networks.

Both paths run the same forward pass (the same ``acktr_lab.kfac`` layers, float32) under
``tf.function``, on the same fixed batch, and are timed in interleaved repetitions (the order
rotates every repetition) after a warm-up; the table reports medians. Both call their compiled
step as a concrete function, as ``KfacOptimizer.minimize`` does (one per K-FAC update plan),
so neither pays ``tf.function``'s per-call argument binding (≈ 0.07 ms).

The asynchronous configuration is the exception: its worker thread keeps eigendecomposing in
the background between updates, which would slow whatever is timed next. It is therefore
timed in one contiguous stretch of updates right after the interleaved repetitions (blocks
of updates, median over blocks), in its steady state: worker and updates share the cores,
exactly as in training. The worker is drained before anything else is timed.

What one "update" includes:

* RMSprop: forward, backward, global-norm clipping (0.5), ``RMSprop.apply_gradients``.
* K-FAC (``KfacOptimizer.minimize``): forward, backward of the loss, the sampled-Fisher
  loss (sampling, and its backward pass to the pre-activations), the batch statistics and
  their moving average, the preconditioning, the trust region, momentum, and the
  eigendecomposition of every factor, each as the configuration amortises it (the Fisher
  loss is given lazily, so only updates that take statistics compute it):

  - ``sync, kfac_update=N``: the eigendecomposition runs inside the update every N updates;
    one timing sample is a block of N consecutive updates divided by N (the amortised cost).
  - ``async, kfac_update=1``: the eigendecomposition runs on a worker thread (numpy, float64)
    and updates use the newest finished one; one sample is a block of updates divided by
    its length. The worker shares the same CPU cores, so its cost shows up here.
    (The first decomposition after the cold start is synchronous; it is part of the warm-up.)
  - ``kfac_update=N, stats_update=N`` (the amortised rows): statistics, with the backward
    pass of the sampled-Fisher loss they need, and decompositions every N-th update only.
  - ``no stats, no eigh (floor)``: what every K-FAC update costs however it is amortised:
    forward, backward, preconditioning ``Q_A[(Q_Aᵀ∇Q_G)/(λ_Aλ_Gᵀ+δ)]Q_Gᵀ``, trust region,
    momentum. For the Nature CNN's fc layer (3137×512) the two rotations by ``Q_A`` alone
    are 2·3137²·512·2 ≈ 20 GFLOP (≈ 55 ms on 2 cores, half an RMSprop update).
  - ``approx_t2`` (CNN rows): the convolutions' factors from each example's mean patch
    (Stable Baselines 2's option, "K-FAC-reduce"), B rows per layer instead of B·T.

The line ``kfac_overhead_ratio_amortised`` gives the amortised rows' ratios, and
``kfac_overhead_ratio_approx_t2`` the CNN's async rows with ``approx_t2``. The last line is
``kfac_overhead_ratio <mlp> <cnn>`` (K-FAC time / RMSprop time) for the
configurations named on the line above it: MLP sync kfac_update=1 (ACKTR's default), CNN
async kfac_update=1 (what OpenAI baselines' ACKTR runs for Atari).

The line ``kfac_overhead_ratio_lstm`` gives the same two ratios for ``MlpLstmPolicy``
(MLP 64-64, an LSTM of 256 units unrolled over 20 steps of 32 envs; its gate block is
``[x_t, h_{t−1}, 1] → 1024``, 321×321 and 1024×1024 factors).

Usage: ``python benchmarks/kfac_overhead.py [--quick] [--networks mlp lstm cnn]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.kfac import Conv2D, Dense, KfacLayer, KfacOptimizer
from acktr_lab.recurrent import MlpLstmPolicy

Batch = dict[str, tf.Tensor]

ENT_COEF, VF_COEF, VF_FISHER_COEF, MAX_GRAD_NORM = 0.01, 0.25, 1.0, 0.5
#: kfac_update so large that, after the warm-up's first decomposition, no update eigendecomposes:
#: the diagnostic row "K-FAC sync, no eigh" times statistics + preconditioning + trust region alone.
NEVER = 10**9


# -- networks --------------------------------------------------------------------------------
class ActorCritic(tf.Module):
    """A body of K-FAC layers, then a policy head (logits) and a value head."""

    def __init__(self, body: list[KfacLayer], features: int, n_actions: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.body = body
        self.pi = Dense(features, n_actions, name="pi", init_scale=0.01, rng=rng)
        self.vf = Dense(features, 1, name="vf", rng=rng)
        self.layers: list[KfacLayer] = [*body, self.pi, self.vf]

    def features(self, obs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def __call__(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        hidden = self.features(obs)
        return self.pi(hidden), self.vf(hidden)[:, 0]

    @property
    def weights(self) -> list[tf.Variable]:
        return [v for layer in self.layers for v in layer.parameters]


class Mlp(ActorCritic):
    """Stable Baselines 2's MlpPolicy body: 64-64, tanh."""

    def __init__(self, obs_dim: int, n_actions: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        body: list[KfacLayer] = [
            Dense(obs_dim, 64, name="fc0", init_scale=np.sqrt(2), rng=rng),
            Dense(64, 64, name="fc1", init_scale=np.sqrt(2), rng=rng),
        ]
        super().__init__(body, 64, n_actions, rng)

    def features(self, obs: tf.Tensor) -> tf.Tensor:
        hidden = obs
        for layer in self.body:
            hidden = tf.tanh(layer(hidden))
        return hidden


class NatureCnn(ActorCritic):
    """The Nature DQN body: conv 32 8x8/4, 64 4x4/2, 64 3x3/1, fc 512, ReLU; uint8 input / 255."""

    def __init__(self, n_actions: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        s = np.sqrt(2)
        body: list[KfacLayer] = [
            Conv2D(4, 32, 8, strides=4, name="c1", init_scale=s, rng=rng),
            Conv2D(32, 64, 4, strides=2, name="c2", init_scale=s, rng=rng),
            Conv2D(64, 64, 3, strides=1, name="c3", init_scale=s, rng=rng),
            Dense(3136, 512, name="fc1", init_scale=s, rng=rng),
        ]
        super().__init__(body, 512, n_actions, rng)

    def features(self, obs: tf.Tensor) -> tf.Tensor:
        hidden = tf.cast(obs, tf.float32) / 255.0
        for conv in self.body[:3]:
            hidden = tf.nn.relu(conv(hidden))
        hidden = tf.reshape(hidden, [-1, 3136])
        return tf.nn.relu(self.body[3](hidden))


class Lstm(ActorCritic):
    """Stable Baselines 2's MlpLstmPolicy (``acktr_lab``'s own: 64-64 tanh, an LSTM of 256 whose
    gates are one K-FAC block over ``[x_t, h_{t−1}, 1]``), unrolled over ``n_steps`` steps of
    ``batch / n_steps`` envs from a zero state."""

    def __init__(self, obs_dim: int, n_actions: int, seed: int, n_steps: int) -> None:
        tf.Module.__init__(self)
        space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.policy = MlpLstmPolicy(space, gym.spaces.Discrete(n_actions), seed=seed)
        self.n_steps = n_steps
        self.layers = list(self.policy.kfac_layers)

    def __call__(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n_envs = obs.shape[0] // self.n_steps
        sequences = tf.reshape(obs, [self.n_steps, n_envs, -1])
        starts = tf.zeros([self.n_steps, n_envs], tf.bool)
        output = self.policy.unroll(sequences, self.policy.initial_state(n_envs), starts)
        return output.distribution.logits, output.values


# -- losses ----------------------------------------------------------------------------------
def actor_critic_losses(model: ActorCritic, batch: Batch) -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
    """ACKTR's training loss and (lazily, for updates that take statistics) its sampled-Fisher loss,
    from one forward pass."""
    logits, values = model(batch["obs"])
    neglogp = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=batch["actions"], logits=logits)
    probs = tf.nn.softmax(logits)
    entropy = tf.reduce_mean(-tf.reduce_sum(probs * tf.nn.log_softmax(logits), axis=-1))
    pg_loss = tf.reduce_mean(batch["advantages"] * neglogp) - ENT_COEF * entropy
    vf_loss = tf.reduce_mean(tf.square(values - batch["returns"]))
    loss = pg_loss + VF_COEF * vf_loss

    def fisher_loss() -> tf.Tensor:
        sampled = tf.stop_gradient(tf.random.categorical(logits, 1)[:, 0])
        pg_fisher = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=sampled, logits=logits))
        noisy_values = tf.stop_gradient(values + tf.random.normal(tf.shape(values)))
        return pg_fisher + VF_FISHER_COEF * tf.reduce_mean(tf.square(values - noisy_values))

    return loss, fisher_loss


def make_batch(network: str, batch_size: int, n_actions: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    if network in ("mlp", "lstm"):
        obs = tf.constant(rng.normal(size=(batch_size, 8)).astype(np.float32))
    else:
        obs = tf.constant(rng.integers(0, 256, size=(batch_size, 84, 84, 4), dtype=np.uint8))
    return {
        "obs": obs,
        "actions": tf.constant(rng.integers(0, n_actions, size=batch_size)),
        "advantages": tf.constant(rng.normal(size=batch_size).astype(np.float32)),
        "returns": tf.constant(rng.normal(size=batch_size).astype(np.float32)),
    }


def lstm_steps(batch_size: int) -> int:
    """Time steps the LSTM is unrolled over: SB2 ACKTR's n_steps (20), or 16 for a batch of 64."""
    for steps in (20, 16):
        if batch_size % steps == 0:
            return steps
    raise SystemExit(f"--batch {batch_size}: the LSTM rows need a batch divisible by 20 or 16")


def make_model(network: str, n_actions: int, batch_size: int) -> ActorCritic:
    if network == "lstm":
        return Lstm(8, n_actions, seed=0, n_steps=lstm_steps(batch_size))
    return Mlp(8, n_actions, seed=0) if network == "mlp" else NatureCnn(n_actions, seed=0)


# -- timed configurations --------------------------------------------------------------------
@dataclass
class Config:
    network: str
    label: str
    kfac_update: int | None  # None: RMSprop
    async_eigen: bool
    run_block: Callable[[], int]  # runs one block of updates, returns how many
    warm_step: Callable[[], None]  # one untimed update
    optimizer: KfacOptimizer | None = None
    samples: list[float] = field(default_factory=list)
    refreshes: int = 0
    stats_update: int = 1

    def sample(self) -> None:
        start = time.perf_counter()
        n = self.run_block()
        self.samples.append((time.perf_counter() - start) / n)

    @property
    def median_ms(self) -> float:
        return 1e3 * statistics.median(self.samples)


def rmsprop_config(network: str, batch: Batch, n_actions: int) -> Config:
    model = make_model(network, n_actions, int(batch["obs"].shape[0]))
    optimizer = tf.keras.optimizers.RMSprop(learning_rate=7e-4, rho=0.99, epsilon=1e-5)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss, _ = actor_critic_losses(model, batch)
        grads = tape.gradient(loss, model.weights)
        grads, _ = tf.clip_by_global_norm(grads, MAX_GRAD_NORM)
        optimizer.apply_gradients(zip(grads, model.weights))
        return loss

    concrete = step.get_concrete_function()  # called like KfacOptimizer.minimize calls its steps

    def run_block() -> int:
        concrete().numpy()
        return 1

    return Config(network, "RMSprop (A2C)", None, False, run_block, lambda: concrete().numpy() and None)


def kfac_config(
    network: str,
    batch: Batch,
    n_actions: int,
    *,
    kfac_update: int,
    stats_update: int = 1,
    async_eigen: bool = False,
    block: int = 1,
    label: str | None = None,
    approx_t2: bool = False,
) -> Config:
    model = make_model(network, n_actions, int(batch["obs"].shape[0]))
    opt = KfacOptimizer(
        model.weights,
        model.layers,
        learning_rate=0.25,
        kfac_update=kfac_update,
        stats_update=stats_update,
        cold_iter=1,
        async_eigen_decomp=async_eigen,
        approx_t2=approx_t2,
    )

    def loss_fn() -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
        return actor_critic_losses(model, batch)

    if label is None:
        label = f"K-FAC {'async' if async_eigen else 'sync'}, kfac_update={kfac_update}"
        if stats_update > 1:
            label += f", stats_update={stats_update}"
        if approx_t2:
            label += ", approx_t2"
    config = Config(
        network,
        label,
        kfac_update,
        async_eigen,
        lambda: 0,
        lambda: opt.minimize(loss_fn) and None,
        opt,
        stats_update=stats_update,
    )

    def run_block() -> int:
        for _ in range(block):
            metrics = opt.minimize(loss_fn)
            if not metrics["kfac_step"] or metrics["skipped"]:
                raise RuntimeError(f"{config.label}: timed update was not a K-FAC step: {metrics}")
            config.refreshes += bool(metrics["inverse_refreshed"])
        return block

    config.run_block = run_block
    return config


def warm_up(config: Config) -> None:
    """Compile, pass the cold start, and run every branch (statistics or not, refresh or not) once."""
    if config.kfac_update is None:
        updates = 3
    else:
        periods = [p for p in (config.kfac_update, config.stats_update) if p < NEVER]
        updates = 2 + max([2, *periods])
    for _ in range(updates):
        config.warm_step()
    if config.optimizer is not None and config.optimizer.async_eigen_decomp:
        config.optimizer.wait_for_inverse()  # start timing from a steady state, not a backlog


def run_interleaved(configs: list[Config], reps: int) -> None:
    for rep in range(reps):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        for config in order:
            config.sample()
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{c.samples[-1] * 1e3:.1f}" for c in configs), flush=True)


def run_contiguous(config: Config, reps: int) -> None:
    for _ in range(reps):
        config.sample()
    print(f"  {config.label}: " + ", ".join(f"{t * 1e3:.1f}" for t in config.samples), flush=True)
    if config.optimizer is not None:
        config.optimizer.wait_for_inverse()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few repetitions, batch 64")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 640; 64 with --quick)")
    parser.add_argument("--cnn-sync-kfac-update", type=int, default=10, help="amortisation of the sync CNN row")
    parser.add_argument(
        "--period", type=int, default=10, help="kfac_update = stats_update of the amortised rows (default 10)"
    )
    parser.add_argument(
        "--networks", nargs="+", choices=["mlp", "lstm", "cnn"], default=["mlp", "lstm", "cnn"], help="networks to time"
    )
    args = parser.parse_args(argv)

    batch_size = args.batch or (64 if args.quick else 640)
    mlp_reps, cnn_reps = (20, 3) if args.quick else (200, 7)  # CNN async: cnn_reps blocks of async_block
    lstm_reps = 5 if args.quick else 30
    cnn_u = args.cnn_sync_kfac_update
    period = args.period
    async_block = 3 if args.quick else 5
    n_actions_mlp, n_actions_cnn = 4, 6
    print(
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, devices: "
        f"{[d.device_type for d in tf.config.list_physical_devices()]}; float32; batch {batch_size}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
        f"{'QUICK' if args.quick else 'full'} run ({mlp_reps} MLP / {cnn_reps} CNN interleaved repetitions)",
        flush=True,
    )

    all_rows: list[Config] = []
    ratios: dict[str, dict[str, float]] = {"default": {}, "amortised": {}, "approx_t2": {}}
    for network, reps in (("mlp", mlp_reps), ("lstm", lstm_reps), ("cnn", cnn_reps)):
        if network not in args.networks:
            continue
        n_actions = n_actions_cnn if network == "cnn" else n_actions_mlp
        batch = make_batch(network, batch_size, n_actions, seed=1)
        rmsprop = rmsprop_config(network, batch, n_actions)
        kfac = functools.partial(kfac_config, network, batch, n_actions)
        every_period = {"kfac_update": period, "stats_update": period}  # the amortised rows
        no_eigh = "K-FAC sync, no eigh"
        if network in ("mlp", "lstm"):  # ACKTR's default for Mlp policies: synchronous, kfac_update=1
            default = kfac(kfac_update=1)
            amortised = kfac(**every_period, block=period)
            extra = [kfac(kfac_update=NEVER, label=f"{no_eigh} (diagnostic)")]
        else:  # OpenAI baselines' ACKTR on Atari: asynchronous eigendecomposition, kfac_update=1
            cnn_async = functools.partial(kfac, async_eigen=True)
            default = cnn_async(kfac_update=1, block=async_block)
            amortised = cnn_async(**every_period, block=async_block * 2)
            approx_t2 = cnn_async(kfac_update=1, block=async_block, approx_t2=True)
            cheapest = cnn_async(**every_period, block=async_block * 2, approx_t2=True)
            extra = [
                approx_t2,
                cheapest,
                kfac(kfac_update=cnn_u, block=cnn_u),
                kfac(kfac_update=NEVER, label=f"{no_eigh} (diagnostic)"),
                kfac(kfac_update=NEVER, approx_t2=True, label=f"{no_eigh}, approx_t2 (diagnostic)"),
            ]
        floor = kfac(kfac_update=NEVER, stats_update=NEVER, label="K-FAC, no stats, no eigh (floor)")
        configs = [rmsprop, default, amortised, *extra, floor]
        print(f"{network}: warming up (compilation, cold start) ...", flush=True)
        for config in configs:
            warm_up(config)
        interleaved = [c for c in configs if not c.async_eigen]
        print(f"{network}: ms per update, interleaved columns: {[c.label for c in interleaved]}", flush=True)
        run_interleaved(interleaved, reps)
        for config in configs:
            if config.async_eigen:
                print(f"{network}: contiguous (background worker running), ms per update:", flush=True)
                run_contiguous(config, reps)
        ratios["default"][network] = default.median_ms / rmsprop.median_ms
        ratios["amortised"][network] = amortised.median_ms / rmsprop.median_ms
        if network == "cnn":
            ratios["approx_t2"] = {
                "default": approx_t2.median_ms / rmsprop.median_ms,
                "amortised": cheapest.median_ms / rmsprop.median_ms,
            }
        all_rows += configs

    print()
    width = max(len(config.label) for config in all_rows)
    header = (
        f"{'network':8s} {'update':{width}s} {'median ms/update':>17s} {'x RMSprop':>10s} "
        f"{'samples':>8s} {'refreshes':>10s}"
    )
    print(header)
    print("-" * len(header))
    for config in all_rows:
        base = next(c for c in all_rows if c.network == config.network and c.kfac_update is None).median_ms
        refreshes = "" if config.kfac_update is None else str(config.refreshes)
        print(
            f"{config.network:8s} {config.label:{width}s} {config.median_ms:17.2f} {config.median_ms / base:10.2f} "
            f"{len(config.samples):8d} {refreshes:>10s}"
        )
    print(
        "\nnotes: sync kfac_update=N rows are amortised (a block of N updates / N), interleaved with RMSprop; "
        "async rows: contiguous blocks of updates with the eigendecomposition worker (LAPACK, one thread) running; "
        "'refreshes' = decompositions installed while timed; the floor row does no statistics and no "
        f"decomposition (forward, backward, preconditioning, trust region, momentum); batch {batch_size}."
    )

    def line(kind: str) -> str:
        return f"{ratios[kind].get('mlp', float('nan')):.3f} {ratios[kind].get('cnn', float('nan')):.3f}"

    print(
        f"kfac_overhead_ratio_amortised: kfac_update=stats_update={period} (mlp sync, cnn async): " + line("amortised")
    )
    print(
        "kfac_overhead_ratio_approx_t2: cnn async with approx_t2 (mean-patch conv factors), "
        f"kfac_update=1 / kfac_update=stats_update={period}: "
        + " ".join(f"{ratios['approx_t2'].get(kind, float('nan')):.3f}" for kind in ("default", "amortised"))
    )
    print(
        f"kfac_overhead_ratio_lstm: MlpLstmPolicy (n_lstm 256, unrolled {lstm_steps(batch_size)} steps), "
        f"sync kfac_update=1 / kfac_update=stats_update={period}: "
        + " ".join(f"{ratios[kind].get('lstm', float('nan')):.3f}" for kind in ("default", "amortised"))
    )
    print("kfac_overhead_ratio columns: ACKTR's defaults, mlp = K-FAC sync kfac_update=1; cnn = async kfac_update=1")
    print(f"kfac_overhead_ratio {line('default')}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
