"""LEAF / FedProx Synthetic(α, β): naturally federated multinomial classification.

Follows the generator of Li et al., "Federated Optimization in Heterogeneous Networks"
(FedProx, 2020), §5.1, and its reference code: for client k,

- u_k ~ N(0, α²), B_k ~ N(0, β²)  (α, β are standard deviations, as in the reference code);
- W_k ∈ R^{C×d} with entries ~ N(u_k, 1), b_k ∈ R^C with entries ~ N(u_k, 1);
- v_k ∈ R^d with entries ~ N(B_k, 1); Σ diagonal with Σ_jj = j^(−1.2);
- x ~ N(v_k, Σ), y = argmax(W_k x + b_k);
- n_k = ⌊LogNormal(μ, σ)⌋ + min_samples (μ = 4, σ = 2, min 50 by default): a power law.

With ``iid: true`` every client uses one global (W, b) and v_k = 0 (the reference
``synthetic_iid``). α controls how much the local models differ, β how much the local
feature distributions differ. Each client's own samples are split into train and test by
``task.test_fraction`` (the reference uses 90/10); the test set is the union of the
clients' test parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flsim.config.schema import MAX_POPULATION, TaskConfig
from flsim.rng import numpy_rng
from flsim.tasks.base import Shard, Task
from flsim.tasks.client_streams import client_generators
from flsim.tasks.common import to_tensor, warn_unused_partition
from flsim.tasks.lazy_clients import LazyClients
from flsim.tasks.models import ModelInput, build_model, resolve_model_name
from flsim.tasks.params import MAX_DIM, MAX_SAMPLES, DatasetParams


def _logits(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x Wᵀ + b without BLAS, class by class, so labels are identical on every CPU."""
    return np.stack([(x * w[c]).sum(axis=1) + b[c] for c in range(w.shape[0])], axis=1)


#: Populations whose smallest training pool exceeds this many numbers are built lazily.
LAZY_MIN_FLOATS = 2**19
#: Clients whose held-out samples form the test set, unless ``test_clients`` says otherwise.
DEFAULT_TEST_CLIENTS = 1000


@dataclass(frozen=True)
class LeafParams:
    """The checked ``dataset_params`` of ``synthetic_leaf`` and its model name."""

    alpha: float
    beta: float
    dim: int
    classes: int
    iid: bool
    min_samples: int
    log_mean: float
    log_sigma: float
    cap: int | None
    test_clients: int
    model_name: str


def is_lazy(num_clients: int, min_samples: int, dim: int) -> bool:
    """Whether a population is built lazily: its *smallest* possible pool is large."""
    return num_clients * min_samples * (dim + 1) > LAZY_MIN_FLOATS


def leaf_params(cfg: TaskConfig) -> LeafParams:
    """The checked parameters of ``synthetic_leaf`` and its model name (see the builder).

    Client sizes are log-normal draws, so their total is not known before drawing; the
    bounds on ``lognormal_mean``/``lognormal_sigma`` keep a typo from asking for terabytes.
    """
    p = DatasetParams("synthetic_leaf", cfg.dataset_params)
    alpha = p.real("alpha", 1.0, minimum=0.0)
    beta = p.real("beta", 1.0, minimum=0.0)
    dim = p.integer("dim", 60, minimum=1, maximum=MAX_DIM)
    classes = p.integer("classes", 10, minimum=2, maximum=10_000)
    iid = p.boolean("iid", False)
    min_samples = p.integer("min_samples", 50, minimum=2, maximum=MAX_SAMPLES)
    log_mean = p.real("lognormal_mean", 4.0, maximum=12.0)
    log_sigma = p.real("lognormal_sigma", 2.0, minimum=0.0, maximum=4.0)
    cap = p.optional_integer("max_samples_per_client", minimum=min_samples, maximum=MAX_SAMPLES)
    test_clients = p.integer("test_clients", DEFAULT_TEST_CLIENTS, minimum=1, maximum=MAX_POPULATION)
    p.finish()
    resident = (
        min(cfg.num_clients, test_clients) if is_lazy(cfg.num_clients, min_samples, dim) else cfg.num_clients
    )
    p.check_size(resident * min_samples * (dim + 1), "synthetic_leaf's smallest resident data")
    model_name = resolve_model_name(cfg.model, "synthetic_leaf", allowed={"logreg", "linear", "mlp"})
    return LeafParams(
        alpha, beta, dim, classes, iid, min_samples, log_mean, log_sigma, cap, test_clients, model_name
    )


@dataclass(frozen=True)
class _LeafSpec:
    """How client k's samples are drawn, all from its own ("data", k) stream."""

    seed: int
    params: LeafParams
    test_fraction: float
    feature_std: np.ndarray
    w_global: np.ndarray
    b_global: np.ndarray

    def size(self, rng: np.random.Generator) -> int:
        """n_k, the stream's first draw (so every client's size comes from one cheap pass)."""
        p = self.params
        n_k = int(rng.lognormal(p.log_mean, p.log_sigma)) + p.min_samples
        return n_k if p.cap is None else min(n_k, p.cap)

    def held_out(self, n_k: int) -> int:
        return min(max(int(self.test_fraction * n_k), 1), n_k - 1)

    def client(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train x, train y, test x, test y) of client k: the generator of the module doc."""
        p = self.params
        rng = numpy_rng(self.seed, "data", node=k)
        n_k = self.size(rng)
        if p.iid:
            w, b, v = self.w_global, self.b_global, np.zeros(p.dim)
        else:
            u_k = rng.normal(0.0, p.alpha)
            b_k = rng.normal(0.0, p.beta)
            w = rng.normal(u_k, 1.0, (p.classes, p.dim))
            b = rng.normal(u_k, 1.0, p.classes)
            v = rng.normal(b_k, 1.0, p.dim)
        x = v + rng.standard_normal((n_k, p.dim)) * self.feature_std
        y = np.argmax(_logits(x, w, b), axis=1).astype(np.int64)
        n_train = n_k - self.held_out(n_k)
        return x[:n_train].astype(np.float32), y[:n_train], x[n_train:].astype(np.float32), y[n_train:]

    def train_sizes(self, num_clients: int) -> list[int]:
        """Every client's training size from one block-seeded pass (one draw a client)."""
        sizes = [self.size(rng) for rng in client_generators(self.seed, "data", range(num_clients))]
        return [n_k - self.held_out(n_k) for n_k in sizes]


def _leaf_spec(cfg: TaskConfig, seed: int, params: LeafParams) -> _LeafSpec:
    # Python's float power (libm, scalar) for the same bits on every CPU.
    feature_std = np.array([float(j + 1) ** -0.6 for j in range(params.dim)])
    shared = numpy_rng(seed, "data/shared")
    w_global = shared.standard_normal((params.classes, params.dim))
    b_global = shared.standard_normal(params.classes)
    return _LeafSpec(seed, params, cfg.test_fraction, feature_std, w_global, b_global)


def build_synthetic_leaf(cfg: TaskConfig, seed: int) -> Task:
    """``dataset: synthetic_leaf``.

    dataset_params: ``alpha`` (1.0), ``beta`` (1.0), ``dim`` (60), ``classes`` (10),
    ``iid`` (false), ``min_samples`` (50), ``lognormal_mean`` (4.0), ``lognormal_sigma``
    (2.0), ``max_samples_per_client`` (none: optional cap on n_k, to bound memory),
    ``test_clients`` (1000: the test set is the held-out part of clients 0..test_clients-1,
    so a population of 10⁶ does not draw every client's samples to build it).
    Models: logreg (natural), linear (same model), mlp.

    Large populations (see :func:`is_lazy`) hold a :class:`LazyClients`: client k is drawn
    from its own stream when first used, with the same samples as the eager build.
    """
    params = leaf_params(cfg)
    warn_unused_partition(cfg)
    spec = _leaf_spec(cfg, seed, params)
    num_clients = cfg.num_clients
    tested = [spec.client(k) for k in range(min(num_clients, params.test_clients))]
    clients: Sequence[Shard]
    if is_lazy(num_clients, params.min_samples, params.dim):
        sizes: list[int] = []

        def train_sizes() -> list[int]:
            if not sizes:
                sizes.extend(spec.train_sizes(num_clients))
            return list(sizes)

        clients = LazyClients(num_clients, lambda k: _train_shard(spec.client(k)), train_sizes)
    else:
        clients = [_train_shard(parts) for parts in tested]
        clients += [_train_shard(spec.client(k)) for k in range(len(tested), num_clients)]
    objective = build_model(params.model_name, ModelInput(params.dim, params.classes), cfg.model)
    return Task(
        name="synthetic_leaf",
        clients=clients,
        test=Shard(
            to_tensor(np.concatenate([t[2] for t in tested])),
            to_tensor(np.concatenate([t[3] for t in tested])),
        ),
        objective=objective,
        classification=True,
        num_classes=params.classes,
    )


def _train_shard(parts: tuple[np.ndarray, ...]) -> Shard:
    return Shard(to_tensor(parts[0]), to_tensor(parts[1]))
