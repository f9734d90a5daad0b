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

import numpy as np

from flsim.config.schema import TaskConfig
from flsim.rng import numpy_rng
from flsim.tasks.base import Shard, Task
from flsim.tasks.common import to_tensor, warn_unused_partition
from flsim.tasks.models import ModelInput, build_model, resolve_model_name
from flsim.tasks.params import MAX_DIM, MAX_SAMPLES, DatasetParams


def _logits(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x Wᵀ + b without BLAS, class by class, so labels are identical on every CPU."""
    return np.stack([(x * w[c]).sum(axis=1) + b[c] for c in range(w.shape[0])], axis=1)


def leaf_params(cfg: TaskConfig) -> tuple[float, float, int, int, bool, int, float, float, int | None, str]:
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
    p.finish()
    p.check_size(cfg.num_clients * min_samples * (dim + 1), "synthetic_leaf's smallest data")
    model_name = resolve_model_name(cfg.model, "synthetic_leaf", allowed={"logreg", "linear", "mlp"})
    return alpha, beta, dim, classes, iid, min_samples, log_mean, log_sigma, cap, model_name


def build_synthetic_leaf(cfg: TaskConfig, seed: int) -> Task:
    """``dataset: synthetic_leaf``.

    dataset_params: ``alpha`` (1.0), ``beta`` (1.0), ``dim`` (60), ``classes`` (10),
    ``iid`` (false), ``min_samples`` (50), ``lognormal_mean`` (4.0), ``lognormal_sigma``
    (2.0), ``max_samples_per_client`` (none: optional cap on n_k, to bound memory).
    Models: logreg (natural), linear (same model), mlp.
    """
    alpha, beta, dim, classes, iid, min_samples, log_mean, log_sigma, cap, model_name = leaf_params(cfg)
    warn_unused_partition(cfg)

    # Python's float power (libm, scalar) for the same bits on every CPU.
    feature_std = np.array([float(j + 1) ** -0.6 for j in range(dim)])
    shared = numpy_rng(seed, "data/shared")
    w_global = shared.standard_normal((classes, dim))
    b_global = shared.standard_normal(classes)

    clients: list[Shard] = []
    test_x: list[np.ndarray] = []
    test_y: list[np.ndarray] = []
    for k in range(cfg.num_clients):
        rng = numpy_rng(seed, "data", node=k)
        n_k = int(rng.lognormal(log_mean, log_sigma)) + min_samples
        if cap is not None:
            n_k = min(n_k, cap)
        if iid:
            w, b, v = w_global, b_global, np.zeros(dim)
        else:
            u_k = rng.normal(0.0, alpha)
            b_k = rng.normal(0.0, beta)
            w = rng.normal(u_k, 1.0, (classes, dim))
            b = rng.normal(u_k, 1.0, classes)
            v = rng.normal(b_k, 1.0, dim)
        x = v + rng.standard_normal((n_k, dim)) * feature_std
        y = np.argmax(_logits(x, w, b), axis=1).astype(np.int64)
        n_test = min(max(int(cfg.test_fraction * n_k), 1), n_k - 1)
        n_train = n_k - n_test
        clients.append(Shard(to_tensor(x[:n_train].astype(np.float32)), to_tensor(y[:n_train])))
        test_x.append(x[n_train:].astype(np.float32))
        test_y.append(y[n_train:])

    objective = build_model(model_name, ModelInput(dim, classes), cfg.model)
    return Task(
        name="synthetic_leaf",
        clients=clients,
        test=Shard(to_tensor(np.concatenate(test_x)), to_tensor(np.concatenate(test_y))),
        objective=objective,
        classification=True,
        num_classes=classes,
    )
