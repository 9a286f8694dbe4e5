"""Hand-written baselines: the programs a user would write without ribbed.

Each network family that the benchmark runs through ribbed is written here
twice, the way a user would write it by hand:

* in plain torch: tensors with ``requires_grad``, ``loss.backward()`` and an
  in-place SGD step, the shortest reasonable torch program;
* in Mesa: one agent per neuron, each holding its own incoming weights and
  pulling its inputs (forward) and its downstream deltas (backward) with
  numpy, stage by stage.

Every class is built from plain numpy arrays (the initial weights, float64),
runs one training step per ``tick(x, t)`` and returns the loss as a float;
``weights()`` gives the current weights back as float64 numpy arrays in the
layout they were given, so a driver can check that a baseline and ribbed did
the same math.

Families (losses are means, as ``F.cross_entropy`` / ``F.mse_loss`` compute
them; SGD is ``param -= lr * grad``):

* ``Layered``: dense layers, tanh hidden, identity output, cross-entropy on
  one-hot targets.
* ``Sparse``: two populations of ``n``, fixed in-degree ``k`` (``pre[j]`` are
  the presynaptic indices of post neuron ``j``), identity output, MSE.
* ``Recurrent``: input population one-to-one into a tanh population that
  also receives its own previous-tick activations through a fixed in-degree
  delayed projection (truncated BPTT, one step), MSE.
"""

from __future__ import annotations

import mesa
import numpy as np
import torch
import torch.nn.functional as F


def _np(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor, whatever its device and dtype."""
    return t.detach().to("cpu", torch.float64).numpy().copy()


# ---------------------------------------------------------------------------
# torch baselines
# ---------------------------------------------------------------------------


class Layered:
    """Dense multilayer perceptron in plain torch (tanh hidden, CE loss)."""

    def __init__(self, Ws, bs, lr: float, device: str = "cpu", dtype=torch.float32):
        self.lr, self.device, self.dtype = lr, device, dtype
        self.Ws = [torch.tensor(W, dtype=dtype, device=device, requires_grad=True) for W in Ws]
        self.bs = [torch.tensor(b, dtype=dtype, device=device, requires_grad=True) for b in bs]

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        """One SGD step on the mini-batch ``x`` with one-hot targets ``t``."""
        y = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device)
        last = len(self.Ws) - 1
        for i, (W, b) in enumerate(zip(self.Ws, self.bs)):
            u = y @ W.T + b
            y = u if i == last else torch.tanh(u)
        loss = -(t * torch.log_softmax(y, dim=1)).sum(1).mean()
        loss.backward()
        with torch.no_grad():
            for p in self.Ws + self.bs:
                p -= self.lr * p.grad
                p.grad = None
        return loss.item()

    def weights(self):
        """(list of W, list of b) as float64 numpy arrays."""
        return [_np(W) for W in self.Ws], [_np(b) for b in self.bs]


class Sparse:
    """Fixed in-degree sparse projection in plain torch (gather form, MSE)."""

    def __init__(self, pre, W, b, lr: float, device: str = "cpu", dtype=torch.float32):
        self.lr, self.device, self.dtype = lr, device, dtype
        self.pre = torch.as_tensor(np.asarray(pre), dtype=torch.long, device=device)
        self.W = torch.tensor(W, dtype=dtype, device=device, requires_grad=True)
        self.b = torch.tensor(b, dtype=dtype, device=device, requires_grad=True)

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        """One SGD step on the mini-batch ``x`` (batch × n) with targets ``t``."""
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device)
        u = (self.W * x[:, self.pre]).sum(-1) + self.b
        loss = F.mse_loss(u, t)
        loss.backward()
        with torch.no_grad():
            for p in (self.W, self.b):
                p -= self.lr * p.grad
                p.grad = None
        return loss.item()

    def weights(self):
        """(W, b) as float64 numpy arrays."""
        return _np(self.W), _np(self.b)


class Recurrent:
    """One-to-one input plus delayed sparse recurrence in plain torch (MSE)."""

    def __init__(self, w_in, pre, W, b, lr: float, device: str = "cpu", dtype=torch.float32):
        self.lr, self.device, self.dtype = lr, device, dtype
        self.pre = torch.as_tensor(np.asarray(pre), dtype=torch.long, device=device)
        self.w_in = torch.tensor(w_in, dtype=dtype, device=device, requires_grad=True)
        self.W = torch.tensor(W, dtype=dtype, device=device, requires_grad=True)
        self.b = torch.tensor(b, dtype=dtype, device=device, requires_grad=True)
        self.y_prev = None  # previous tick's activations, zeros before the first

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        """One SGD step; the delayed edge reads last tick's ``y`` as a constant."""
        x = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        t = torch.as_tensor(t, dtype=self.dtype, device=self.device)
        if self.y_prev is None:
            self.y_prev = torch.zeros_like(x)
        u = self.w_in * x + (self.W * self.y_prev[:, self.pre]).sum(-1) + self.b
        y = torch.tanh(u)
        loss = F.mse_loss(y, t)
        loss.backward()
        with torch.no_grad():
            for p in (self.w_in, self.W, self.b):
                p -= self.lr * p.grad
                p.grad = None
        self.y_prev = y.detach()
        return loss.item()

    def weights(self):
        """(w_in, W, b) as float64 numpy arrays."""
        return _np(self.w_in), _np(self.W), _np(self.b)


# ---------------------------------------------------------------------------
# Mesa baselines: one agent per neuron
# ---------------------------------------------------------------------------


class InputNeuron(mesa.Agent):
    """An input neuron: its activation is set from the data each tick."""

    def __init__(self, model: mesa.Model):
        super().__init__(model)
        self.y = None


class Neuron(mesa.Agent):
    """A neuron holding its incoming weights, bias and presynaptic agents."""

    def __init__(self, model: mesa.Model, inputs, w, b, activation: str):
        super().__init__(model)
        self.inputs = list(inputs)  # presynaptic agents
        self.w = np.array(w, dtype=np.float64)  # one weight per input
        self.b = float(b)
        self.activation = activation  # "tanh" or "identity"
        self.downstream = []  # (agent, position of self in agent.inputs)
        self.x = self.u = self.y = self.delta = None

    def gather(self) -> np.ndarray:
        """Pull the presynaptic activations, shape (k, batch)."""
        return np.array([a.y for a in self.inputs])

    def forward(self) -> None:
        self.x = self.gather()
        self.u = self.w @ self.x + self.b
        self.y = np.tanh(self.u) if self.activation == "tanh" else self.u

    def derivative(self) -> np.ndarray:
        return 1.0 - self.y**2 if self.activation == "tanh" else np.ones_like(self.y)

    def backward(self) -> None:
        """Pull downstream deltas and the weights they hold for this neuron."""
        w_down = np.array([a.w[p] for a, p in self.downstream])
        d_down = np.array([a.delta for a, p in self.downstream])
        self.delta = self.derivative() * (w_down @ d_down)

    def learn(self, lr: float) -> None:
        batch = self.delta.shape[0]
        self.w -= lr * (self.x @ self.delta) / batch
        self.b -= lr * self.delta.mean()


def _link_downstream(layer) -> None:
    """Tell each presynaptic agent which agents read it, and at which position."""
    for agent in layer:
        for pos, a in enumerate(agent.inputs):
            if isinstance(a, Neuron):
                a.downstream.append((agent, pos))


class MesaLayered(mesa.Model):
    """Dense multilayer perceptron, one Mesa agent per neuron (CE loss)."""

    def __init__(self, Ws, bs, lr: float):
        super().__init__(rng=0)
        self.lr = lr
        self.inputs = [InputNeuron(self) for _ in range(Ws[0].shape[1])]
        self.layers = []
        prev = self.inputs
        for i, (W, b) in enumerate(zip(Ws, bs)):
            act = "identity" if i == len(Ws) - 1 else "tanh"
            layer = [Neuron(self, prev, W[j], b[j], act) for j in range(W.shape[0])]
            _link_downstream(layer)
            self.layers.append(layer)
            prev = layer

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        for i, a in enumerate(self.inputs):
            a.y = x[:, i]
        for layer in self.layers:
            for a in layer:
                a.forward()
        # loss: cross-entropy of the output layer's u against one-hot t
        out = self.layers[-1]
        u = np.array([a.u for a in out])  # (n_out, batch)
        z = u - u.max(axis=0)
        logsm = z - np.log(np.exp(z).sum(axis=0))
        loss = -(t.T * logsm).sum(axis=0).mean()
        soft = np.exp(logsm)
        for j, a in enumerate(out):
            a.delta = soft[j] - t[:, j]  # per-sample dloss/du
        for layer in reversed(self.layers[:-1]):
            for a in layer:
                a.backward()
        for layer in self.layers:
            for a in layer:
                a.learn(self.lr)
        return float(loss)

    def weights(self):
        """(list of W, list of b) as float64 numpy arrays."""
        Ws = [np.array([a.w for a in layer]) for layer in self.layers]
        bs = [np.array([a.b for a in layer]) for layer in self.layers]
        return Ws, bs


class MesaSparse(mesa.Model):
    """Fixed in-degree sparse projection, one Mesa agent per neuron (MSE)."""

    def __init__(self, pre, W, b, lr: float):
        super().__init__(rng=0)
        self.lr = lr
        n = len(pre)
        self.inputs = [InputNeuron(self) for _ in range(n)]
        self.outputs = [
            Neuron(self, [self.inputs[i] for i in pre[j]], W[j], b[j], "identity")
            for j in range(n)
        ]

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        for i, a in enumerate(self.inputs):
            a.y = x[:, i]
        for a in self.outputs:
            a.forward()
        n = len(self.outputs)
        err = np.array([a.y for a in self.outputs]) - t.T  # (n, batch)
        loss = (err**2).mean()
        for j, a in enumerate(self.outputs):
            a.delta = 2.0 * err[j] / n  # per-sample dloss/du
        for a in self.outputs:
            a.learn(self.lr)
        return float(loss)

    def weights(self):
        """(W, b) as float64 numpy arrays."""
        return np.array([a.w for a in self.outputs]), np.array([a.b for a in self.outputs])


class RecurrentNeuron(Neuron):
    """A rec neuron: weight 0 is its one-to-one input, the rest read last tick's rec."""

    def __init__(self, model, in_agent, rec_inputs, w_in, w_rec, b):
        super().__init__(model, [in_agent] + list(rec_inputs), np.r_[w_in, w_rec], b, "tanh")
        self.y_prev = None

    def gather(self) -> np.ndarray:
        x_in = self.inputs[0].y
        return np.array([x_in] + [a.y_prev for a in self.inputs[1:]])

    def advance(self) -> None:
        self.y_prev = self.y


class MesaRecurrent(mesa.Model):
    """Input one-to-one into a delayed sparse tanh recurrence, one agent per neuron."""

    def __init__(self, w_in, pre, W, b, lr: float):
        super().__init__(rng=0)
        self.lr = lr
        n = len(pre)
        self.inputs = [InputNeuron(self) for _ in range(n)]
        self.rec = [
            RecurrentNeuron(self, self.inputs[j], [], w_in[j], W[j], b[j]) for j in range(n)
        ]
        for j, a in enumerate(self.rec):  # rec→rec needs every rec agent to exist
            a.inputs += [self.rec[i] for i in pre[j]]

    def tick(self, x: np.ndarray, t: np.ndarray) -> float:
        for i, a in enumerate(self.inputs):
            a.y = x[:, i]
        if self.rec[0].y_prev is None:  # zeros before the first tick
            for a in self.rec:
                a.y_prev = np.zeros(x.shape[0])
        for a in self.rec:
            a.forward()
        n = len(self.rec)
        y = np.array([a.y for a in self.rec])  # (n, batch)
        err = y - t.T
        loss = (err**2).mean()
        for j, a in enumerate(self.rec):
            a.delta = (1.0 - a.y**2) * 2.0 * err[j] / n  # no credit along the delayed edge
        for a in self.rec:
            a.learn(self.lr)
        for a in self.rec:
            a.advance()
        return float(loss)

    def weights(self):
        """(w_in, W, b) as float64 numpy arrays."""
        w = np.array([a.w for a in self.rec])
        return w[:, 0].copy(), w[:, 1:].copy(), np.array([a.b for a in self.rec])
