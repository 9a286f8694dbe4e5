"""Metrics of emergent specialization: do neurons come to prefer classes, and do they group?

Every function here is a pure function of numpy arrays, vectorized over neurons, samples
and edges, so that it can be applied to the full record of a large run after the fact:

* per-neuron tuning: :func:`selectivity_index`, :func:`preferred_class` and
  :func:`mutual_information` (with its discretization :func:`quantile_bins`);
* agreement between a clustering of neurons and their preferred classes: :func:`purity`,
  against the chance level :func:`shuffled_purity` (its distribution :func:`purity_null`), and
  :func:`cluster_sizes`; how stable a clustering is between two evaluations:
  :func:`cluster_stability`;
* null baselines: :func:`label_permutation_null` (the tuning metrics of the same activations
  under permuted labels) and :func:`permutation_p_value`;
* community structure of the synaptic graph: :func:`modularity`;
* the distribution of coupling strengths: :func:`alpha_summary`.

Shapes follow the convention of the rest of the package: activations are
``(samples, n_neurons)``, one row per presented sample.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "alpha_summary",
    "class_responses",
    "cluster_sizes",
    "cluster_stability",
    "label_permutation_null",
    "modularity",
    "mutual_information",
    "permutation_p_value",
    "preferred_class",
    "purity",
    "purity_null",
    "quantile_bins",
    "selectivity_index",
    "shuffled_purity",
]


# --------------------------------------------------------------------------- validation


def _as_int_array(values, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array; floats are accepted only when they are whole numbers.

    Labels and ids often come back from files or pandas as floats; refusing those outright
    would be unhelpful, but silently truncating 1.5 to 1 would hide a real mistake.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64, copy=False)
    if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")


def _as_activations(activations) -> np.ndarray:
    arr = np.asarray(activations, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"activations must be 2-D (samples, n_neurons), got shape {arr.shape}")
    return arr


def _class_means(activations, labels, n_classes: int, floor, min_present: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean response of every neuron to every class, and which classes have samples.

    Returns ``means`` of shape ``(n_classes, n_neurons)`` and the boolean mask ``present``
    of shape ``(n_classes,)``.  Rows of absent classes are NaN, so that callers have to
    leave them out explicitly rather than mistake an absent class for a silent response.
    """
    r = _as_activations(activations)
    y = _as_int_array(labels, "labels")
    if y.shape[0] != r.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries but activations has {r.shape[0]} samples")
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in [{y.min()}, {y.max()}]")
    floor = np.asarray(floor, dtype=np.float64)
    if floor.ndim != 0 and floor.shape != (r.shape[1],):
        raise ValueError(f"floor must be a scalar or have shape ({r.shape[1]},), got shape {floor.shape}")

    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    if present.sum() < min_present:
        raise ValueError(f"at least {min_present} class(es) must have samples, got {int(present.sum())}")

    means = np.full((n_classes, r.shape[1]), np.nan)
    means[present] = _class_sums(r - floor, y, counts[present]) / counts[present, None]
    return means, present


def _class_sums(r: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per class with samples (in class order), the column sums of its rows of ``r``.

    The rows are grouped by a stable sort and summed in sample order, one pass for all neurons:
    unlike a BLAS product, whose rounding can depend on how an array happens to be aligned in
    memory, the same values always give the same sums, so ties between classes stay ties and a
    resumed run records the very same numbers."""
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(r[order], starts, axis=0)


# --------------------------------------------------------------------------- tuning


def selectivity_index(
    activations: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    floor: np.ndarray | float = 0.0,
) -> np.ndarray:
    """How strongly each neuron prefers one class over the others.

    Responses are measured from the activation function's lower bound,
    ``r = activations - floor`` (``-1`` for tanh, ``0`` for sigmoid or relu), so that a
    silent neuron has response 0 whatever its nonlinearity.  For each neuron, with
    ``mu_c`` the mean response over the samples of class ``c`` (classes without samples
    are left out), ``mu_max`` the largest class mean and ``mu_rest`` the mean of the
    other class means::

        index = (mu_max - mu_rest) / (mu_max + mu_rest)

    The index is 1 for a neuron that responds to one class only, 0 for one that responds
    equally to all, and lies in ``[0, 1]`` whenever ``r >= 0``.  Where
    ``mu_max + mu_rest == 0`` (a neuron that never responds) it is 0.

    Parameters
    ----------
    activations : ndarray of shape (samples, n_neurons)
    labels : ndarray of shape (samples,)
        Integer class of each sample, in ``[0, n_classes)``.
    n_classes : int
    floor : float or ndarray of shape (n_neurons,), default=0.0
        Lower bound of each neuron's activation function.

    Returns
    -------
    index : ndarray of shape (n_neurons,)

    Raises
    ------
    ValueError
        On mismatched shapes, labels out of range, or fewer than 2 classes with samples.
    """
    means, present = _class_means(activations, labels, n_classes, floor, min_present=2)
    return _selectivity_of_means(means[present])


def _selectivity_of_means(means: np.ndarray) -> np.ndarray:
    """The selectivity index from the ``(k, n_neurons)`` means of the k classes with samples."""
    k = means.shape[0]
    mu_max = means.max(axis=0)
    # Removing one copy of the maximum leaves the other k - 1 means, ties included.
    mu_rest = (means.sum(axis=0) - mu_max) / (k - 1)
    num = mu_max - mu_rest
    den = mu_max + mu_rest
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def class_responses(
    activations: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    floor: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The class-tuning matrix: each neuron's mean response ``activations - floor`` to each class.

    The matrix the selectivity index and the preferred class are read from, kept so that a
    neuron's whole tuning curve can be looked at, not only its summary.

    Returns
    -------
    responses : ndarray of shape (n_classes, n_neurons); rows of classes without samples are NaN.
    """
    means, _ = _class_means(activations, labels, n_classes, floor, min_present=1)
    return means


def preferred_class(
    activations: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    floor: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The class each neuron responds to most, on average.

    Per neuron, the argmax over classes of the mean response ``activations - floor``;
    ties go to the smallest class index, and classes without samples are never chosen.
    Only one class needs samples here (unlike :func:`selectivity_index`, whose index is
    undefined with a single class).

    Returns
    -------
    preferred : ndarray of shape (n_neurons,), dtype int64

    Raises
    ------
    ValueError
        On mismatched shapes, labels out of range, or no samples at all.
    """
    means, present = _class_means(activations, labels, n_classes, floor, min_present=1)
    # np.argmax returns the first maximum, which gives ties to the smallest class index.
    means[~present] = -np.inf
    return np.argmax(means, axis=0).astype(np.int64)


def quantile_bins(activations: np.ndarray, bins: int) -> np.ndarray:
    """Discretize each neuron's activations into ``bins`` equal-frequency bins.

    The interior edges are the ``1/bins, ..., (bins-1)/bins`` quantiles of each column
    (``np.quantile``, linear method), and bins are closed on the right as in
    ``pandas.qcut``: the code of a value is the number of edges strictly below it.  Equal
    values therefore always share a bin; a column with many ties gets fewer, larger bins
    (a constant column is all 0) rather than arbitrarily split ties.

    Returns
    -------
    codes : ndarray of shape (samples, n_neurons), dtype int64, values in ``[0, bins)``
    """
    x = _as_activations(activations)
    if isinstance(bins, (bool, np.bool_)) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if x.shape[0] == 0:
        raise ValueError("activations must have at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("activations must be finite to be binned")
    codes = np.zeros(x.shape, dtype=np.int64)
    if bins == 1:
        return codes
    edges = np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1], axis=0)  # (bins - 1, n_neurons)
    for edge in edges:  # a loop over bins, vectorized over samples and neurons
        codes += x > edge
    return codes


def mutual_information(activations: np.ndarray, labels: np.ndarray, bins: int = 8) -> np.ndarray:
    """Mutual information, in nats, between each neuron's binned activation and the label.

    Unlike the selectivity index, this also credits neurons whose response carries class
    information without a single preferred class (e.g. silent for one class only).
    Activations are discretized with :func:`quantile_bins`; the result equals
    ``sklearn.metrics.mutual_info_score(labels, codes[:, j])`` for every neuron ``j``.
    Labels may be any values ``np.unique`` can sort.

    Returns
    -------
    mi : ndarray of shape (n_neurons,), non-negative; 0 for a constant neuron.
    """
    codes = quantile_bins(activations, bins)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != codes.shape[0]:
        raise ValueError(f"labels must have shape ({codes.shape[0]},), got {labels.shape}")
    classes, y = np.unique(labels, return_inverse=True)
    return _mutual_information_of_codes(codes, y, classes.size, bins)


def _mutual_information_of_codes(codes: np.ndarray, y: np.ndarray, n_labels: int, bins: int) -> np.ndarray:
    """Mutual information of binned activations ``codes`` and label codes ``y`` in ``[0, n_labels)``."""
    n_samples, n_neurons = codes.shape

    # Joint counts of (neuron, bin, label) for all neurons at once, through one combined index.
    index = (np.arange(n_neurons)[None, :] * bins + codes) * n_labels + y[:, None]
    joint = np.bincount(index.ravel(), minlength=n_neurons * bins * n_labels)
    joint = joint.reshape(n_neurons, bins, n_labels).astype(np.float64)
    count_bin = joint.sum(axis=2, keepdims=True)
    count_label = np.bincount(y, minlength=n_labels).astype(np.float64)[None, None, :]

    # I = sum_xy (n_xy / n) * log(n * n_xy / (n_x * n_y)), over the non-empty cells only.
    nonzero = joint > 0
    ratio = np.divide(n_samples * joint, count_bin * count_label, out=np.ones_like(joint), where=nonzero)
    terms = np.where(nonzero, joint * np.log(ratio), 0.0)
    mi = terms.sum(axis=(1, 2)) / n_samples
    # As in sklearn, rounding can leave a tiny negative value where the true MI is 0.
    return np.clip(mi, 0.0, None)


# --------------------------------------------------------------------------- clusters


def _check_pair(assignment, classes) -> tuple[np.ndarray, np.ndarray]:
    a = _as_int_array(assignment, "assignment")
    c = _as_int_array(classes, "classes")
    if a.shape != c.shape:
        raise ValueError(f"assignment and classes must have equal length, got {a.size} and {c.size}")
    if a.size == 0:
        raise ValueError("purity needs at least one element")
    return a, c


def _sum_of_majorities(groups: np.ndarray, classes: np.ndarray) -> int:
    """Sum over groups of the count of the most common class in the group."""
    return int(_group_majorities(groups, classes).sum())


def _group_majorities(groups: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per group (in the order of ``np.unique(groups)``), the count of its most common class.

    Works on the sparse list of (group, class) pairs that actually occur, so it needs no
    dense contingency table however many clusters and classes there are.
    """
    _, g = np.unique(groups, return_inverse=True)
    _, c = np.unique(classes, return_inverse=True)
    n_c = int(c.max()) + 1
    pairs, counts = np.unique(g * n_c + c, return_counts=True)
    best = np.zeros(int(g.max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs // n_c, counts)
    return best


def purity(assignment: np.ndarray, classes: np.ndarray) -> float:
    """Cluster purity of ``assignment`` with respect to ``classes``.

    Purity (Manning, Raghavan & Schütze, *Introduction to Information Retrieval*, 16.3) is
    the fraction of elements that belong to the majority class of their cluster::

        purity = (1 / N) * sum_k max_j |cluster_k ∩ class_j|

    It is 1 for clusters that each hold a single class, and never below the frequency of
    the most common class; see :func:`shuffled_purity` for the chance level.  Cluster and
    class ids are arbitrary integers.
    """
    a, c = _check_pair(assignment, classes)
    return _sum_of_majorities(a, c) / a.size


def shuffled_purity(
    assignment: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    repeats: int = 100,
) -> float:
    """Mean purity after randomly permuting ``classes`` across elements, ``repeats`` times.

    Purity rewards small clusters (singletons are always pure), so its raw value says
    little; this is the level it reaches by chance with the same cluster sizes and class
    frequencies, and the baseline a real clustering must beat.  The permutations are drawn
    at once with ``rng.permuted`` on a ``(repeats, N)`` array, one permutation per row.
    """
    a, _ = _check_pair(assignment, classes)
    # The mean of the purities is the total of the majorities over repeats * N.
    return int(_shuffled_majorities(assignment, classes, rng, repeats).sum()) / (repeats * a.size)


def purity_null(
    assignment: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    repeats: int = 100,
) -> np.ndarray:
    """The purity of ``assignment`` under each of ``repeats`` random permutations of ``classes``.

    The null distribution whose mean is :func:`shuffled_purity` (the same draws from the same
    ``rng``): its spread says how far above chance a purity must lie to mean anything, and
    with :func:`permutation_p_value` how likely chance alone reaches an observed purity.

    Returns
    -------
    purities : ndarray of shape (repeats,)
    """
    a, _ = _check_pair(assignment, classes)
    return _shuffled_majorities(assignment, classes, rng, repeats) / a.size


def _shuffled_majorities(assignment, classes, rng: np.random.Generator, repeats: int) -> np.ndarray:
    """Per repeat, the sum of the clusters' majority counts after permuting ``classes``."""
    a, c = _check_pair(assignment, classes)
    if isinstance(repeats, (bool, np.bool_)) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    shuffled = rng.permuted(np.broadcast_to(c, (repeats, c.size)), axis=1)
    # Cluster k of repeat r becomes group (r, k), so one pass handles every repeat.
    _, a_codes = np.unique(a, return_inverse=True)
    n_clusters = int(a_codes.max()) + 1
    groups = np.arange(repeats)[:, None] * n_clusters + a_codes[None, :]
    # Groups are numbered repeat by repeat, n_clusters to a repeat (every cluster has members).
    return _group_majorities(groups.ravel(), shuffled.ravel()).reshape(repeats, n_clusters).sum(axis=1)


def cluster_stability(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """How much a clustering of the same neurons changed between two evaluations.

    Returns ``(kept, ari)``: the share of neurons whose unit id is the same in both (units keep
    their ids: a hash bucket, a tree leaf, a neuron's own guide), and the adjusted Rand index
    of the two partitions (Hubert & Arabie 1985; ``sklearn.metrics.adjusted_rand_score``),
    which ignores the ids: 1 for the same grouping, about 0 for an unrelated one.
    """
    from sklearn.metrics import adjusted_rand_score

    a = _as_int_array(previous, "previous")
    b = _as_int_array(current, "current")
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"previous and current must be non-empty and of equal length, got {a.size} and {b.size}")
    return float(np.mean(a == b)), float(adjusted_rand_score(a, b))


def cluster_sizes(assignment: np.ndarray) -> np.ndarray:
    """Sizes of the non-empty clusters, largest first (int64)."""
    a = _as_int_array(assignment, "assignment")
    _, counts = np.unique(a, return_counts=True)
    return np.sort(counts)[::-1].astype(np.int64)


# --------------------------------------------------------------------------- null baselines


def label_permutation_null(
    activations: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    rng: np.random.Generator,
    repeats: int = 100,
    floor: np.ndarray | float = 0.0,
    bins: int = 8,
) -> dict[str, np.ndarray]:
    """Selectivity and mutual information of the same activations under permuted labels.

    A random network already has selective-looking neurons: with finitely many samples, class
    means differ by chance.  Permuting the labels across samples keeps every activation and
    every class's sample count and destroys any real relation between the two, so the values
    computed under ``repeats`` permutations (rows of ``rng.permuted``) are what the metrics
    reach by chance on these very activations.

    Returns
    -------
    null : dict with ``"selectivity"`` and ``"mutual_info"``, each of shape (repeats, n_neurons),
        computed exactly as :func:`selectivity_index` and :func:`mutual_information`.
    """
    if isinstance(repeats, (bool, np.bool_)) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    _, present = _class_means(activations, labels, n_classes, floor, min_present=2)  # validates
    r = _as_activations(activations) - np.asarray(floor, dtype=np.float64)
    y = _as_int_array(labels, "labels")
    counts = np.bincount(y, minlength=n_classes)[present]
    classes = np.unique(y)
    permuted = rng.permuted(np.broadcast_to(y, (repeats, y.size)), axis=1)
    mutual = _PermutedInformation(quantile_bins(activations, bins), bins, classes.size)
    selectivity = np.empty((repeats, r.shape[1]))
    mutual_info = np.empty((repeats, r.shape[1]))
    for k in range(repeats):
        selectivity[k] = _selectivity_of_means(_class_sums(r, permuted[k], counts) / counts[:, None])
        mutual_info[k] = mutual(np.searchsorted(classes, permuted[k]))
    return {"selectivity": selectivity, "mutual_info": mutual_info}


class _PermutedInformation:
    """:func:`mutual_information` of fixed binned activations with many labellings that share
    one label count (permutations), a few times faster than computing each from scratch.

    With n samples, n_xy the joint counts, n_x the bin and n_y the label counts,
    I = (1/n)[sum n_xy log n_xy - sum n_x log n_x - sum n_y log n_y] + log n: only the first sum
    changes with the labelling, and it is read from a table of k log k.  Equal to
    :func:`mutual_information` up to rounding (about 1e-15 of log n)."""

    def __init__(self, codes: np.ndarray, bins: int, n_labels: int):
        n_samples, n_neurons = codes.shape
        self.n_samples, self.n_labels, self.cells = n_samples, n_labels, n_neurons * bins * n_labels
        self.base = (np.arange(n_neurons)[None, :] * bins + codes) * n_labels
        k = np.arange(n_samples + 1, dtype=np.float64)
        self.k_log_k = k * np.log(np.maximum(k, 1.0))
        count_bin = np.bincount((np.arange(n_neurons)[None, :] * bins + codes).ravel(), minlength=n_neurons * bins)
        self.fixed = self.k_log_k[count_bin].reshape(n_neurons, bins).sum(axis=1)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        joint = np.bincount((self.base + y[:, None]).ravel(), minlength=self.cells)
        count_label = np.bincount(y, minlength=self.n_labels)
        joint_term = self.k_log_k[joint].reshape(self.base.shape[1], -1).sum(axis=1)
        n = self.n_samples
        mi = (joint_term - self.fixed - self.k_log_k[count_label].sum()) / n + np.log(n)
        return np.clip(mi, 0.0, None)


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value of ``observed`` against draws ``null`` of its permutation distribution.

    ``(1 + #{null >= observed}) / (1 + len(null))`` (Phipson & Smyth 2010): never 0, since the
    observed labelling is itself one of the permutations.  NaN if ``observed`` is NaN.
    """
    values = np.asarray(null, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("null must hold at least one value")
    if not np.isfinite(observed):
        return float("nan")
    return float((1 + np.count_nonzero(values >= observed)) / (1 + values.size))


# --------------------------------------------------------------------------- graph


def modularity(pre: np.ndarray, post: np.ndarray, weights: np.ndarray, communities: np.ndarray) -> float:
    """Newman's modularity of the synaptic graph under a partition of its neurons.

    The graph is undirected and weighted: nodes ``0 .. len(communities) - 1``, one edge
    ``(pre[e], post[e])`` of weight ``|weights[e]|`` per synapse (inhibitory synapses couple
    neurons as much as excitatory ones).  Pairs listed several times, in either direction,
    add up, and self-loops count once in the total weight and twice in a degree, as in
    networkx.  With ``m`` the total edge weight, ``L_c`` the weight inside community ``c``
    and ``d_c`` the total weighted degree of ``c``::

        Q = sum_c [ L_c / m - (d_c / (2 m)) ** 2 ]

    This equals ``networkx.algorithms.community.modularity(G, partition, weight="weight")``
    but runs in a few ``bincount`` passes, fast enough for 1e7 synapses.

    Returns
    -------
    Q : float, 0.0 when the graph has no weight at all.
    """
    pre = _as_int_array(pre, "pre")
    post = _as_int_array(post, "post")
    w = np.asarray(weights, dtype=np.float64)
    comm = _as_int_array(communities, "communities")
    if not (pre.shape == post.shape == w.shape):
        raise ValueError(f"pre, post and weights must have equal 1-D shapes, got {pre.shape}, {post.shape}, {w.shape}")
    n_nodes = comm.size
    for name, ends in (("pre", pre), ("post", post)):
        if ends.size and (ends.min() < 0 or ends.max() >= n_nodes):
            raise ValueError(f"{name} must index nodes in [0, {n_nodes}), got values in [{ends.min()}, {ends.max()}]")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")

    w = np.abs(w)
    m = w.sum()
    if m == 0:
        return 0.0
    _, node_comm = np.unique(comm, return_inverse=True)
    n_comm = int(node_comm.max()) + 1
    c_pre = node_comm[pre]
    c_post = node_comm[post]
    inside = w[c_pre == c_post].sum()  # the sum over c of L_c
    degree = np.bincount(c_pre, weights=w, minlength=n_comm) + np.bincount(c_post, weights=w, minlength=n_comm)
    return float(inside / m - np.sum((degree / (2.0 * m)) ** 2))


# --------------------------------------------------------------------------- couplings


def alpha_summary(alpha: np.ndarray) -> dict[str, float]:
    """Summary statistics of a 1-D array of coupling strengths.

    Keys ``mean``, ``std`` (population, ``ddof=0``), ``min``, ``q10``, ``q50`` (median),
    ``q90`` and ``max``; quantiles use numpy's default linear method.  An empty array gives
    NaN for every key, so that summaries of runs with and without couplings stack into the
    same table.
    """
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"alpha must be 1-D, got shape {a.shape}")
    keys = ("mean", "std", "min", "q10", "q50", "q90", "max")
    if a.size == 0:
        return {key: float("nan") for key in keys}
    q10, q50, q90 = np.quantile(a, [0.1, 0.5, 0.9])
    values = (a.mean(), a.std(), a.min(), q10, q50, q90, a.max())
    return {key: float(value) for key, value in zip(keys, values)}
