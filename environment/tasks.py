"""Tasks: the data a network is fed and how its output population is judged.

A task is drawn once, in shared code, from the scenario seed: the samples (for synthetic
tasks), the stratified train/test split, and the scaling (fitted on the training part only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ribbed.environment.npz import Layout, read_npz
from ribbed.errors import Problem, ScenarioError
from ribbed.scenarios.schema import Scenario
from ribbed.scenarios.validation import sequence_size_findings
from ribbed.seeding import component_rng

__all__ = ["IMAGE_SHAPES", "Dataset", "image_shape", "load_task", "mackey_glass_series"]

#: The (rows, columns) of each task whose samples are images, flattened row by row into the
#: input population: what lets a report draw an input neuron's weights as a picture.  A task
#: not listed has no image shape (its inputs are features, not pixels).
IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8)}  # scikit-learn's digits: 8x8 images


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and held-out samples.  For classification ``y`` holds integer labels."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    problem: str  # "classification" or "regression"
    loss: str  # "cross_entropy" or "mse"
    #: (rows, columns) when each sample is an image flattened row by row (see IMAGE_SHAPES), else None.
    image_shape: tuple[int, int] | None = None
    #: Time-series tasks: the persistence baseline's held-out predictions (each window's last
    #: value, (n_test, 1)), the forecast any predictor must beat; None for other tasks.
    persistence: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        if self.problem == "classification":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return int(self.y_train.shape[1])

    @property
    def classification(self) -> bool:
        return self.problem == "classification"

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Target matrix (n, n_outputs): one-hot rows for classification, the values for regression."""
        if self.classification:
            return np.eye(self.n_outputs)[y]
        return y


def _split_scale(scenario: Scenario, X: np.ndarray, y: np.ndarray, stratify: bool, problem: str) -> Dataset:
    task = scenario.task
    split_seed = int(component_rng(scenario.seed, "data", "split").integers(0, 2**31 - 1))
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=task.test_fraction, random_state=split_seed, stratify=y if stratify else None
        )
    except ValueError as exc:  # too few samples for the fraction (or for every class on both sides)
        raise ScenarioError(Problem(
            scenario.source, "task.test_fraction", f"cannot split {len(X)} samples this way: {exc}",
            "choose a test_fraction that leaves samples of every class on both sides, or use more samples",
        )) from None
    if not np.all(np.isfinite(X_train)):
        raise ScenarioError(Problem(scenario.source, "task.noise", "the task produced non-finite inputs",
                                    "lower the noise"))
    scaler = StandardScaler().fit(X_train)
    return Dataset(scaler.transform(X_train), y_train, scaler.transform(X_test), y_test, problem, task.loss,
                   image_shape(task.kind))


def image_shape(kind: str) -> tuple[int, int] | None:
    """The (rows, columns) of a task kind's samples when they are images, else None; from the
    task's definition, without loading its data."""
    return IMAGE_SHAPES.get(kind)


def load_task(scenario: Scenario) -> Dataset:
    """The dataset of ``scenario.task``, drawn from the scenario seed."""
    task, seed = scenario.task, scenario.seed
    if task.kind == "digits":
        digits = load_digits()
        return _split_scale(scenario, digits.data.astype(np.float64), digits.target.astype(np.int64),
                            True, "classification")
    if task.kind == "moons":
        sample_seed = int(component_rng(seed, "data", "samples").integers(0, 2**31 - 1))
        X, y = make_moons(n_samples=task.n_samples, noise=task.noise, random_state=sample_seed)
        return _split_scale(scenario, X, y.astype(np.int64), True, "classification")
    if task.kind == "xor":
        rng = component_rng(seed, "data", "samples")
        signs = rng.choice([-1.0, 1.0], size=(task.n_samples, 2))
        X = signs + task.noise * rng.standard_normal((task.n_samples, 2))
        y = (signs[:, 0] != signs[:, 1]).astype(np.int64)
        return _split_scale(scenario, X, y, True, "classification")
    if task.kind == "sine":
        rng = component_rng(seed, "data", "samples")
        x = rng.uniform(-np.pi, np.pi, size=(task.n_samples, 1))
        y = np.sin(x) + task.noise * rng.standard_normal(x.shape)
        return _split_scale(scenario, x, y, False, "regression")
    if task.kind == "mackey_glass":
        return _mackey_glass_task(scenario)
    if task.kind == "delayed_recall":
        rng = component_rng(seed, "data", "samples")
        y = rng.integers(0, task.n_symbols, size=task.n_samples)
        X = np.zeros((task.n_samples, task.delay + 1, task.n_symbols))
        X[np.arange(task.n_samples), 0, y] = 1.0  # the cue, one-hot, at the first step
        X[:, 1:, :] = task.noise * rng.standard_normal((task.n_samples, task.delay, task.n_symbols))
        return _split_scale(scenario, X.reshape(task.n_samples, -1), y.astype(np.int64), True, "classification")
    if task.kind == "npz":
        return _load_npz(scenario)
    if task.kind == "constant":
        # Nothing to draw, split or scale: every sample is the same vector (its encoding makes it vary).
        n_test = min(task.n_samples - 1, max(1, math.ceil(task.n_samples * task.test_fraction)))
        X = np.full((task.n_samples, task.n_inputs), task.value, dtype=np.float64)
        y = np.zeros((task.n_samples, task.n_outputs), dtype=np.float64)
        n_train = task.n_samples - n_test
        return Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:], "regression", "mse")
    raise TypeError(f"unknown task {task.kind!r}")  # pragma: no cover


#: Mackey-Glass's standard chaotic setting (Mackey & Glass 1977, as the time-series benchmarks use
#: it): dx/dt = BETA x(t - TAU) / (1 + x(t - TAU)^POWER) - GAMMA x(t), integrated by Euler's
#: scheme with step MG_DT from a constant history, the first MG_TRANSIENT time units discarded.
MG_TAU, MG_BETA, MG_GAMMA, MG_POWER, MG_DT, MG_TRANSIENT = 17, 0.2, 0.1, 10, 0.1, 500


def mackey_glass_series(length: int, sample_every: int, x0: float) -> np.ndarray:
    """``length`` values of the Mackey-Glass series, one every ``sample_every`` time units after
    the transient, from the constant history x(t) = x0 for t <= 0 (docs/semantics.md, "Data").

    Why Euler with a fixed step: it is exact to state (every executor, every language gets the
    same numbers), and a delay of tau / dt = 170 whole steps needs no interpolation."""
    per_unit = round(1 / MG_DT)
    delay = MG_TAU * per_unit
    n = (MG_TRANSIENT + (length - 1) * sample_every) * per_unit + 1
    x = np.empty(n + delay)
    x[:delay + 1] = x0  # x[delay + k] is x(k dt); indices below are the history
    for k in range(delay, n + delay - 1):
        lagged = x[k - delay]
        x[k + 1] = x[k] + MG_DT * (MG_BETA * lagged / (1.0 + lagged ** MG_POWER) - MG_GAMMA * x[k])
    picked = delay + MG_TRANSIENT * per_unit + np.arange(length) * sample_every * per_unit
    return x[picked]


def _mackey_glass_task(scenario: Scenario) -> Dataset:
    """Windows of the series and the value ``horizon`` samples after each, split in time: the
    held-out windows start after the last value any training window or target touches, so nothing
    held out was seen in training.  Inputs and targets are scaled alike (one mean and deviation, the
    training part's), so the persistence baseline stays a prediction in the targets' units."""
    task = scenario.task
    n_test = math.ceil(task.n_samples * task.test_fraction)
    n_train = task.n_samples - n_test
    if n_train < 1 or n_test < 1:
        raise ScenarioError(Problem(scenario.source, "task.test_fraction",
                                    f"cannot split {task.n_samples} windows into training and held-out ones",
                                    "choose a test_fraction between 1/n_samples and 1 - 1/n_samples"))
    span = task.window + task.horizon - 1  # a window and its target, from its first value
    rng = component_rng(scenario.seed, "data", "samples")
    x0 = float(rng.uniform(0.5, 1.5))
    series = mackey_glass_series(n_train + n_test + 2 * span, task.sample_every, x0)
    train_part = series[:n_train + span]
    mu, sigma = float(train_part.mean()), float(train_part.std())
    scaled = (series - mu) / sigma
    starts = np.concatenate([np.arange(n_train), n_train + span + np.arange(n_test)])
    X = scaled[starts[:, None] + np.arange(task.window)]
    y = scaled[starts + span][:, None]
    X = X + task.noise * rng.standard_normal(X.shape)
    return Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:], "regression", "mse",
                   persistence=X[n_train:, -1:].copy())


_NPZ_ARRAYS = ("X_train", "y_train", "X_test", "y_test")


def _load_npz(scenario: Scenario) -> Dataset:
    """The arrays of an npz task, read within a memory bound by
    :func:`~ribbed.environment.npz.read_npz`. Their shapes and dtypes are checked from the
    files' headers before any data is read (samples in rows, one label or row of targets per
    sample, as many features as input neurons); their values after (finite numbers, labels
    0..C-1, as many classes or targets as output neurons)."""
    task = scenario.task
    path = Path(task.path)
    if not path.is_absolute() and scenario.folder is not None:
        path = scenario.folder / path

    def problem(message: str, fix: str) -> ScenarioError:
        return ScenarioError(Problem(scenario.source, "task.path", message, fix))

    def labels_problem(key: str, found: str) -> ScenarioError:
        return problem(f"{key} must be a 1-D array of integer labels 0..C-1 ({key} in {path}: {found})",
                       "store one label per sample, as integers from 0: y.astype(int)")

    def check_layout(layout: Layout) -> None:
        for key, (shape, _) in layout.items():
            if shape[:1] == (0,):
                raise problem(f"{key} in {path} is empty", "store at least one sample in each array")
        for key in ("X_train", "X_test"):
            if len(layout[key][0]) != 2:
                raise problem(f"{key} in {path} has shape {layout[key][0]}; X_train and X_test must be 2-D with "
                              "equal columns", "store one sample per row: X.reshape(len(X), -1)")
        (train, _), (test, _) = layout["X_train"], layout["X_test"]
        if train[1] != test[1]:
            raise problem(f"X_train {train} and X_test {test} in {path} must be 2-D with equal columns",
                          "store the same features for both")
        for key in ("y_train", "y_test"):
            shape, dtype = layout[key]
            if task.problem == "classification":
                if len(shape) != 1:
                    raise labels_problem(key, f"it has shape {shape}")
                if dtype.kind not in "iu":
                    raise labels_problem(key, f"it holds {dtype} values")
            elif len(shape) not in (1, 2):
                raise problem(f"{key} in {path} has shape {shape}; regression targets are 1-D (one per sample) or "
                              "2-D (one row per sample)", "store one row of targets per sample")
        if task.problem == "regression":
            per_train, per_test = (math.prod(layout[key][0][1:]) for key in ("y_train", "y_test"))
            if per_train != per_test:
                raise problem(f"y_train in {path} has {per_train} targets per sample and y_test {per_test}",
                              "store the same targets for both")
        for part in ("train", "test"):
            rows, targets = layout[f"X_{part}"][0][0], layout[f"y_{part}"][0][0]
            if rows != targets:
                raise problem(f"X_{part} in {path} has {rows} rows and y_{part} {targets}",
                              "store one target per sample (row)")
        if scenario.encoding.kind == "sequence":
            findings = list(sequence_size_findings(scenario, train[1], _input_index(scenario)))
            if findings:
                raise problem(findings[0].message + f" (X_train in {path})", findings[0].fix)
        else:
            _check_size(scenario, "input", train[1], "features", problem)

    arrays = read_npz(path, _NPZ_ARRAYS, scenario.source, check=check_layout)
    for key, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise problem(f"{key} in {path} holds infinite or NaN values", "store finite numbers only")
    X_train, X_test, y_train, y_test = arrays["X_train"], arrays["X_test"], arrays["y_train"], arrays["y_test"]
    if task.problem == "classification":
        for key, y in (("y_train", y_train), ("y_test", y_test)):
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= 2**31:
                raise labels_problem(key, f"it holds the label {low if low < 0 else high}")
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    else:
        y_train = y_train.reshape(len(y_train), -1).astype(np.float64)
        y_test = y_test.reshape(len(y_test), -1).astype(np.float64)
    dataset = Dataset(X_train.astype(np.float64), y_train, X_test.astype(np.float64), y_test,
                      task.problem, task.loss)
    _check_size(scenario, "output", dataset.n_outputs, "outputs", problem)
    return dataset


def _input_index(scenario: Scenario) -> int:
    return next(i for i, p in enumerate(scenario.populations) if p.role == "input")


def _check_size(scenario: Scenario, role: str, n: int, what: str, problem) -> None:
    population = next(p for p in scenario.populations if p.role == role)
    if population.size != n:
        raise problem(f"the data has {n} {what} but population '{population.name}' has {population.size} neurons",
                      f"set that population's size to {n}")
