"""A projection's synapses as tensors, for the batched executor.

Two layouts, one interface:

- :class:`DenseProjection` holds the weights as an (n_post, n_pre) matrix, like
  ``torch.nn.Linear.weight``, with a 0/1 mask when not every pair is connected (gradients
  are masked, so absent synapses stay exactly zero);
- :class:`SparseProjection` holds one value per synapse in canonical (post, pre) order, which
  is the CSR order of the (n_post, n_pre) matrix; a CSR tensor sharing that storage does the
  forward product, gathers and scatters do the rest.

A projection is sparse when its density (synapses over n_pre * n_post) is below the
backend's ``sparse_threshold``, unless the scenario sets ``storage``; a dense matrix that
would not fit comfortably is never chosen automatically.  Activations are batch-major,
(batch, n), throughout.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ribbed.environment.network import ProjectionInfo
from ribbed.scenarios.size import storage_layout

__all__ = ["DenseProjection", "ProjectionTensors", "SparseProjection", "make_projection_tensors"]


class ProjectionTensors:
    """What the batched executor does with one projection (see the module docstring)."""

    layout = "abstract"

    def __init__(self, info: ProjectionInfo, device: torch.device, dtype: torch.dtype):
        self.info = info
        self.n_pre, self.n_post = info.pre.size, info.post.size
        self.device, self.dtype = device, dtype
        #: Synapses per postsynaptic neuron (numpy, int64).
        self.row_counts = np.bincount(info.post_idx, minlength=self.n_post)
        self.row_bounds = np.concatenate([[0], np.cumsum(self.row_counts)])

    def tensor(self, values: np.ndarray) -> torch.Tensor:
        """Synapse values in canonical order, in this projection's layout."""
        raise NotImplementedError

    def canonical(self, values: torch.Tensor) -> np.ndarray:
        """The inverse of :meth:`tensor`: one float64 value per synapse, canonical order."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, out: torch.Tensor, weights: torch.Tensor) -> None:
        """``out += x @ W.T``: add the projection's input to the postsynaptic pre-activations."""
        raise NotImplementedError

    def backward(self, delta: torch.Tensor, matrix: torch.Tensor, out: torch.Tensor) -> None:
        """``out += delta @ M``: the error messages sent back, summed per presynaptic neuron."""
        raise NotImplementedError

    def outer_mean(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """mean over the batch of ``a[:, post] * x[:, pre]`` at every synapse.  The result may be a
        buffer that the next call reuses: the caller may overwrite it, but must not keep it."""
        raise NotImplementedError

    def add_outer(self, a: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, scale: float) -> bool:
        """``weights += scale * outer_mean(a, x)`` in one pass, where this layout can; False
        (and nothing done) where it cannot."""
        return False

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        """``values[post]`` at every synapse (values: one per postsynaptic neuron)."""
        raise NotImplementedError

    def row_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over each postsynaptic neuron's synapses (absent synapses must hold 0)."""
        raise NotImplementedError

    def full(self, values: torch.Tensor) -> torch.Tensor:
        """The (n_post, n_pre) matrix, zero where there is no synapse."""
        raise NotImplementedError

    def from_full(self, matrix: torch.Tensor) -> torch.Tensor:
        """Entries of an (n_post, n_pre) matrix at the synapses, in this layout."""
        raise NotImplementedError

    def neuron_values(self, values: torch.Tensor, j: int) -> np.ndarray:
        """Postsynaptic neuron ``j``'s entries, in canonical (presynaptic) order."""
        raise NotImplementedError


class DenseProjection(ProjectionTensors):
    layout = "dense"

    def __init__(self, info: ProjectionInfo, device: torch.device, dtype: torch.dtype):
        super().__init__(info, device, dtype)
        self.flat = torch.as_tensor(info.post_idx * self.n_pre + info.pre_idx, device=device)
        complete = info.n_synapses == self.n_pre * self.n_post
        self.mask: torch.Tensor | None = None
        if not complete:
            mask = torch.zeros(self.n_post * self.n_pre, dtype=dtype, device=device)
            mask[self.flat] = 1.0
            self.mask = mask.view(self.n_post, self.n_pre)

    def tensor(self, values: np.ndarray) -> torch.Tensor:
        matrix = torch.zeros(self.n_post * self.n_pre, dtype=self.dtype, device=self.device)
        matrix[self.flat] = torch.as_tensor(values, dtype=self.dtype, device=self.device)
        return matrix.view(self.n_post, self.n_pre)

    def canonical(self, values: torch.Tensor) -> np.ndarray:
        return values.reshape(-1)[self.flat].cpu().numpy().astype(np.float64)

    def forward(self, x: torch.Tensor, out: torch.Tensor, weights: torch.Tensor) -> None:
        out.addmm_(x, weights.T)

    def backward(self, delta: torch.Tensor, matrix: torch.Tensor, out: torch.Tensor) -> None:
        out.addmm_(delta, matrix)

    def outer_mean(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g = torch.mm(a.T, x).div_(a.shape[0])
        return g if self.mask is None else g.mul_(self.mask)

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        return values[:, None]

    def row_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values.sum(dim=1)

    def full(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def from_full(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix if self.mask is None else matrix * self.mask

    def neuron_values(self, values: torch.Tensor, j: int) -> np.ndarray:
        pre = self.info.pre_idx[self.row_bounds[j]:self.row_bounds[j + 1]]
        return values[j].cpu().numpy()[pre].astype(np.float64)


class SparseProjection(ProjectionTensors):
    layout = "sparse"

    def __init__(self, info: ProjectionInfo, device: torch.device, dtype: torch.dtype):
        super().__init__(info, device, dtype)
        self.col = torch.as_tensor(info.pre_idx, dtype=torch.int64, device=device)
        self.row = torch.as_tensor(info.post_idx, dtype=torch.int64, device=device)
        # 32-bit CSR indices make the sparse product several times faster where they fit.
        small = info.n_synapses < 2**31 - 1
        index_type = torch.int32 if small else torch.int64
        self.crow = torch.as_tensor(self.row_bounds, dtype=index_type, device=device)
        self.col_csr = self.col.to(index_type) if small else self.col
        self._csr: dict[int, torch.Tensor] = {}  # CSR views of value tensors, by storage address
        self._gather: tuple[torch.Tensor, torch.Tensor] | None = None  # reused batch-1 buffers
        self._ones: torch.Tensor | None = None  # the sparsity pattern, for sampled products
        #: The in-degree when every postsynaptic neuron has the same (fixed_in_degree), else None.
        counts = self.row_counts
        self.degree = int(counts[0]) if len(counts) and counts[0] > 0 and (counts == counts[0]).all() else None

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """A CSR tensor that shares ``values``' storage (so updates in place show through)."""
        key = values.data_ptr()
        matrix = self._csr.get(key)
        if matrix is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes that sparse CSR support is in beta
                matrix = torch.sparse_csr_tensor(self.crow, self.col_csr, values, size=(self.n_post, self.n_pre),
                                                 check_invariants=False)
            self._csr[key] = matrix
        return matrix

    def tensor(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(values), dtype=self.dtype, device=self.device).clone()

    def canonical(self, values: torch.Tensor) -> np.ndarray:
        return values.cpu().numpy().astype(np.float64)

    def forward(self, x: torch.Tensor, out: torch.Tensor, weights: torch.Tensor) -> None:
        matrix = self.csr(weights)
        if x.shape[0] == 1:
            out[0].add_(torch.mv(matrix, x[0]))
        else:
            out.add_(torch.sparse.mm(matrix, x.T).T)

    def backward(self, delta: torch.Tensor, matrix: torch.Tensor, out: torch.Tensor) -> None:
        out.index_add_(1, self.col, delta[:, self.row] * matrix)

    def outer_mean(self, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if a.shape[0] == 1:
            gathered, result = self._buffers()
            torch.index_select(x[0], 0, self.col, out=gathered)
            torch.index_select(a[0], 0, self.row, out=result)
            return result.mul_(gathered)
        pattern = self.csr(self.ones())
        sampled = torch.sparse.sampled_addmm(pattern, a.T.contiguous(), x.contiguous(), beta=0.0)
        return sampled.values().div_(a.shape[0])

    def add_outer(self, a: torch.Tensor, x: torch.Tensor, weights: torch.Tensor, scale: float) -> bool:
        """At batch 1: the two gathers, then one fused multiply-add into the weights (the
        gradient is never written out: two passes over the synapses fewer than a step from it)."""
        if a.shape[0] != 1:
            return False
        gathered, result = self._buffers()
        torch.index_select(x[0], 0, self.col, out=gathered)
        if self.degree is not None:  # every neuron has k synapses: rows of k, a broadcast down each
            weights.view(-1, self.degree).addcmul_(a[0].unsqueeze(1), gathered.view(-1, self.degree), value=scale)
            return True
        torch.index_select(a[0], 0, self.row, out=result)
        weights.addcmul_(result, gathered, value=scale)
        return True

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Reused (each projection has its own layout, and its gradient is used once a tick):
        # allocating and first touching nnz floats costs more than the gathers.
        if self._gather is None:
            n = self.info.n_synapses
            self._gather = (torch.empty(n, dtype=self.dtype, device=self.device),
                            torch.empty(n, dtype=self.dtype, device=self.device))
        return self._gather

    def ones(self) -> torch.Tensor:
        if self._ones is None:
            self._ones = torch.ones(self.info.n_synapses, dtype=self.dtype, device=self.device)
        return self._ones

    def per_row(self, values: torch.Tensor) -> torch.Tensor:
        return values[self.row]

    def row_sum(self, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.n_post, dtype=values.dtype, device=self.device).index_add_(0, self.row, values)

    def full(self, values: torch.Tensor) -> torch.Tensor:
        matrix = torch.zeros(self.n_post, self.n_pre, dtype=values.dtype, device=self.device)
        matrix[self.row, self.col] = values
        return matrix

    def from_full(self, matrix: torch.Tensor) -> torch.Tensor:
        return matrix[self.row, self.col]

    def neuron_values(self, values: torch.Tensor, j: int) -> np.ndarray:
        return values[self.row_bounds[j]:self.row_bounds[j + 1]].cpu().numpy().astype(np.float64)


def choose_layout(info: ProjectionInfo, storage: str, threshold: float) -> str:
    """``dense`` or ``sparse`` for a projection (see the module docstring)."""
    return storage_layout(storage, threshold, info.pre.size, info.post.size, info.n_synapses)


def make_projection_tensors(info: ProjectionInfo, storage: str, threshold: float, device: torch.device,
                            dtype: torch.dtype) -> ProjectionTensors:
    layout = choose_layout(info, storage, threshold)
    return (SparseProjection if layout == "sparse" else DenseProjection)(info, device, dtype)
