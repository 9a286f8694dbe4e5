"""Guides: the ML models neurons consult for their credit signal.

A guide predicts a neuron's credit (its propagated delta) from local features, one row per
(neuron, sample): ``[u, y, f'(u), context...]``, where the context is what the task broadcasts
(the one-hot label, or the regression targets).  It learns from the true credit whenever that
arrives.  This is a synthetic gradient in the sense of decoupled neural interfaces
(Jaderberg et al., 2017), kept per neuron or per cluster of neurons.

Guides follow scikit-learn's estimator conventions (``get_params``, ``clone``, ``fit``,
``partial_fit``, ``predict``), with one difference: a guide that has seen no credit yet predicts
0 instead of raising, because a neuron asks its guide at every tick, and "no advice" is the
right answer before the first delivery.

These are the per-guide objects of the reference executor; the batched executor keeps the
``linear`` and ``mlp`` kinds as stacked tensors (:mod:`ribbed.agents.stacked_guides`) and
agrees with these to floating-point tolerance.  What both compute the same way is written
once here, over an array namespace ``xp`` (:mod:`ribbed.agents.xp`): the task's context, the
feature rows, and the linear guide's forgetting statistics and ridge solution.  The rest
differs in how it reduces: a guide here sees the rows its members sent it, the stacked guides
sum every guide's rows at once; and the reference MLP guide is a torch module stepped by
torch.optim itself (the outside reference), while the stacked ones step every guide at once
with a per-guide mask and step count.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.tree import DecisionTreeRegressor

from ribbed.agents.xp import add_, eye_like, mul_, namespace

__all__ = [
    "LinearGuide",
    "task_context",
    "MLPGuide",
    "ReplayGuide",
    "guide_features",
    "identity_features",
    "make_guides",
    "mlp_initial_weights",
    "forget_statistics",
    "ridge_coefficients",
]


def task_context(targets: Any, losses: Any) -> Any:
    """What the task broadcasts to guided neurons for each sample (numpy arrays or torch tensors):
    ``[targets, s, s * targets]`` with the surprise ``s = 1 - exp(-loss)`` (for cross-entropy,
    one minus the probability given to the right class; ``s * onehot`` is then minus the output
    error at the right class)."""
    xp = namespace(targets)
    surprise = -xp.expm1(-losses)[:, None]
    return xp.concatenate([targets, surprise, surprise * targets], axis=1)


def guide_features(u: Any, y: Any, derivative: Any, context: Any) -> Any:
    """Feature rows ``[u, y, f'(u), context..., f'(u) * context...]`` over a batch, of one neuron
    (u, y, derivative: (batch,); result (batch, d)) or of a population's n neurons ((batch, n);
    result (batch, n, d)); context: (batch, n_context), numpy arrays or torch tensors.  The
    gated copy of the context mirrors the chain rule, delta = f'(u) * (error reaching the
    neuron): a guide can weigh the context by the neuron's own sensitivity without having to
    learn a product."""
    xp = namespace(u)
    context = context.reshape(tuple(context.shape[:1]) + (1,) * (u.ndim - 1) + tuple(context.shape[1:]))
    return xp.concatenate([xp.stack([u, y, derivative], axis=-1),
                           xp.broadcast_to(context, tuple(u.shape) + tuple(context.shape[-1:])),
                           derivative[..., None] * context], axis=-1)


def identity_features(outgoing: Any | None, to_output: Any | None, derivative: Any, context: Any) -> Any:
    """A population's identity features (batch, n, k), numpy or torch (docs/semantics.md, "Guided
    learning"): for ``readout`` (``to_output``: (n, n_outputs), each neuron's weights into the
    output population), its weight to the sample's target a = W[:, j] . t, with s a, f'(u) a and
    f'(u) s a; then for ``weights`` (``outgoing``: (n, k)), the neuron's outgoing weights, the same
    in every row.  f'(u) s a is minus the right class's share of the chain rule, delta_j = f'(u_j)
    sum_k W_kj e_k with e = -s t at the right class: a guide shared by many neurons reads in it
    what makes each one's credit its own.  ``derivative``: (batch, n); ``context``: (batch,
    n_context) (:func:`task_context`)."""
    xp = namespace(derivative)
    batch, n = derivative.shape
    parts = []
    if to_output is not None:
        n_outputs = to_output.shape[1]
        targets, surprise = context[:, :n_outputs], context[:, n_outputs:n_outputs + 1]
        a = targets @ to_output.T  # (batch, n)
        parts += [a[..., None], (surprise * a)[..., None], (derivative * a)[..., None],
                  (derivative * (surprise * a))[..., None]]
    if outgoing is not None:
        parts.append(xp.broadcast_to(outgoing[None], (batch,) + tuple(outgoing.shape)))
    return xp.concatenate(parts, axis=-1)


def forget_statistics(statistics: Any, new: Any, forget: float, xp: ModuleType) -> Any:
    """A linear guide's sufficient statistics after a fit: ``forget * statistics + new``
    (in place on tensors; see :func:`ribbed.agents.xp.lerp_`)."""
    return add_(mul_(statistics, forget, xp), new, xp)


def ridge_coefficients(gram: Any, moment: Any, ridge: float, xp: ModuleType) -> Any:
    """A linear guide's coefficients w solving ``(gram + ridge I) w = moment`` (stacked: one
    system per leading index)."""
    return xp.linalg.solve(gram + ridge * eye_like(gram, xp), moment)


class LinearGuide(RegressorMixin, BaseEstimator):
    """Online least squares with an intercept: ridge regression on exponentially forgotten
    sufficient statistics.

    Each :meth:`partial_fit` scales the statistics ``A = X^T X`` and ``b = X^T c`` (X with a
    column of ones) by ``forget`` and adds the new rows; the coefficients solve
    ``(A + ridge I) w = b``.  With ``forget=1`` this is exactly ridge regression on every row
    seen so far.
    """

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("gram_", "moment_", "coef_")

    def __init__(self, ridge: float = 1e-3, forget: float = 0.99):
        self.ridge = ridge
        self.forget = forget

    def _augment(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([X, np.ones(X.shape[0])])

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> LinearGuide:
        Xa = self._augment(np.asarray(X, dtype=np.float64))
        if not hasattr(self, "gram_"):
            self.gram_ = np.zeros((Xa.shape[1], Xa.shape[1]))
            self.moment_ = np.zeros(Xa.shape[1])
        self.gram_ = forget_statistics(self.gram_, Xa.T @ Xa, self.forget, np)
        self.moment_ = forget_statistics(self.moment_, Xa.T @ np.asarray(y, dtype=np.float64), self.forget, np)
        self.coef_ = ridge_coefficients(self.gram_, self.moment_, self.ridge, np)
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearGuide:
        for attribute in ("gram_", "moment_", "coef_"):
            self.__dict__.pop(attribute, None)
        return self.partial_fit(X, y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if not hasattr(self, "coef_"):
            return np.zeros(X.shape[0])
        return self._augment(X) @ self.coef_


def mlp_initial_weights(rng: np.random.Generator, n_guides: int, n_features: int, hidden: int) -> np.ndarray:
    """First-layer weights of ``n_guides`` MLP guides, U(+-1/sqrt(n_features)) as torch.nn.Linear
    draws them, shape (n_guides, n_features, hidden).  Drawn in shared code, so every executor
    starts from the same guides; biases and the output layer start at zero."""
    bound = 1.0 / np.sqrt(n_features)
    return rng.uniform(-bound, bound, size=(n_guides, n_features, hidden))


class _TinyNet(torch.nn.Module):
    """features -> tanh hidden units -> one output."""

    def __init__(self, first: np.ndarray):
        super().__init__()
        n_features, hidden = first.shape
        self.hidden_weight = torch.nn.Parameter(torch.as_tensor(first, dtype=torch.float64).clone())
        self.hidden_bias = torch.nn.Parameter(torch.zeros(hidden, dtype=torch.float64))
        self.out_weight = torch.nn.Parameter(torch.zeros(hidden, dtype=torch.float64))
        self.out_bias = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return torch.tanh(X @ self.hidden_weight + self.hidden_bias) @ self.out_weight + self.out_bias


class MLPGuide(RegressorMixin, BaseEstimator):
    """A tiny torch net trained online: one optimizer step (torch.optim's SGD or Adam) on the
    mean squared error of the rows of each :meth:`partial_fit`.

    ``init`` fixes the first-layer weights (n_features, hidden), as the executors do so that
    they start from the same guide; without it they are drawn from ``random_state`` at the
    first fit.  The output layer starts at zero: a new guide predicts no credit.
    """

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("net_", "optimizer_")

    def __init__(self, hidden: int = 16, lr: float = 0.01, optimizer: str = "adam",
                 init: np.ndarray | None = None, random_state: int | None = None):
        self.hidden = hidden
        self.lr = lr
        self.optimizer = optimizer
        self.init = init
        self.random_state = random_state

    def _initialize(self, n_features: int) -> None:
        if self.init is not None:
            first = np.asarray(self.init, dtype=np.float64)
            if first.shape != (n_features, self.hidden):
                raise ValueError(f"init has shape {first.shape}, expected ({n_features}, {self.hidden})")
        else:
            first = mlp_initial_weights(np.random.default_rng(self.random_state), 1, n_features, self.hidden)[0]
        self.net_ = _TinyNet(first)
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if self.optimizer not in optimizers:
            raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {self.optimizer!r}")
        self.optimizer_ = optimizers[self.optimizer](self.net_.parameters(), lr=self.lr)

    def before_load(self, state: dict) -> None:
        """A snapshot taken after the first fit restores into a net built the same way."""
        if "net_" in state and not hasattr(self, "net_"):
            self._initialize(state["net_"]["hidden_weight"][0].shape[0])

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> MLPGuide:
        X = torch.as_tensor(np.asarray(X, dtype=np.float64))
        y = torch.as_tensor(np.asarray(y, dtype=np.float64))
        if not hasattr(self, "net_"):
            self._initialize(X.shape[1])
        self.optimizer_.zero_grad()
        with torch.enable_grad():
            loss = torch.mean((self.net_(X) - y) ** 2)
            loss.backward()
        self.optimizer_.step()
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPGuide:
        self.__dict__.pop("net_", None)
        return self.partial_fit(X, y)

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if not hasattr(self, "net_"):
            return np.zeros(X.shape[0])
        with torch.no_grad():
            return self.net_(torch.as_tensor(X)).numpy()

    def parameters_(self) -> dict[str, np.ndarray]:
        """The net's parameters by name, as arrays (for comparing executors)."""
        return {name: p.detach().numpy().copy() for name, p in self.net_.named_parameters()}


class ReplayGuide(RegressorMixin, BaseEstimator):
    """Any scikit-learn regressor, refit on a bounded replay buffer.

    :meth:`partial_fit` appends rows to the buffer (the oldest rows leave once it holds
    ``buffer`` rows); :meth:`refit`, called every ``refit_every`` ticks by the executor, fits a
    fresh clone of ``estimator`` on the buffer.  Until the first refit it predicts 0.

    Rows and targets are kept in float32 (scikit-learn's trees read features in float32 anyway):
    a tree's splits are discontinuous in its data, and two executors whose credits differ in the
    last bits of a float64 would otherwise break near-ties differently and grow different trees.
    Rounded to float32, they hand the estimator the same numbers and get the same tree.
    """

    #: What a snapshot saves (scheduler/state.py).
    snapshot_attrs = ("X_", "y_", "fitted_X_", "fitted_y_")

    def __init__(self, estimator: Any = None, buffer: int = 4096, refit_every: int = 20):
        self.estimator = estimator
        self.buffer = buffer
        self.refit_every = refit_every

    def partial_fit(self, X: np.ndarray, y: np.ndarray) -> ReplayGuide:
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)
        if not hasattr(self, "X_"):
            self.X_, self.y_ = X[:0], y[:0]
        self.X_ = np.concatenate([self.X_, X])[-self.buffer:]
        self.y_ = np.concatenate([self.y_, y])[-self.buffer:]
        return self

    def refit(self) -> ReplayGuide:
        """Fit a fresh clone of the estimator on the buffer (nothing to do while it is empty)."""
        if getattr(self, "X_", None) is not None and len(self.X_):
            model = DecisionTreeRegressor() if self.estimator is None else clone(self.estimator)
            self.model_ = model.fit(self.X_, self.y_)
            # The buffer of the last fit (partial_fit replaces the arrays, so no copy): a snapshot
            # keeps it, and restoring fits the same model again.
            self.fitted_X_, self.fitted_y_ = self.X_, self.y_
        return self

    def after_load(self) -> None:
        if getattr(self, "fitted_X_", None) is not None:
            model = DecisionTreeRegressor() if self.estimator is None else clone(self.estimator)
            self.model_ = model.fit(self.fitted_X_, self.fitted_y_)

    def fit(self, X: np.ndarray, y: np.ndarray) -> ReplayGuide:
        for attribute in ("X_", "y_", "model_", "fitted_X_", "fitted_y_"):
            self.__dict__.pop(attribute, None)
        return self.partial_fit(X, y).refit()

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if not hasattr(self, "model_"):
            return np.zeros(X.shape[0])
        return np.asarray(self.model_.predict(X), dtype=np.float64).reshape(X.shape[0])


def make_guides(spec, n_guides: int, n_features: int, rng: np.random.Generator,
                estimator: Any = None) -> list[BaseEstimator]:
    """The ``n_guides`` guides a population's guide spec describes, with their initial state
    drawn from ``rng`` (shared code: every executor builds the same ones)."""
    if spec.kind == "linear":
        return [LinearGuide(ridge=spec.ridge, forget=spec.forget) for _ in range(n_guides)]
    if spec.kind == "mlp":
        first = mlp_initial_weights(rng, n_guides, n_features, spec.hidden)
        return [MLPGuide(hidden=spec.hidden, lr=spec.lr, optimizer=spec.optimizer, init=first[g])
                for g in range(n_guides)]
    if spec.kind == "tree":
        estimator = DecisionTreeRegressor(max_depth=spec.max_depth, min_samples_leaf=spec.min_samples_leaf,
                                          random_state=int(rng.integers(2**31 - 1)))
    return [ReplayGuide(clone(estimator), buffer=spec.buffer, refit_every=spec.refit_every) for _ in range(n_guides)]
