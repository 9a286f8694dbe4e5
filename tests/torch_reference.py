"""A plain torch mirror of a feed-forward ribbed network: the outside reference for gradients."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

import ribbed

TORCH_ACTIVATIONS = {
    "identity": lambda u: u,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "leaky_relu": lambda u: F.leaky_relu(u, 0.01),
}


class TorchMirror:
    """Leaf tensors holding a copy of the model's weights (dense, masked) and biases."""

    def __init__(self, model: ribbed.NetworkModel):
        self.model = model
        self.weights, self.masks, self.biases = {}, {}, {}
        for name, projection in model.projections.items():
            matrix = projection.get_weights(format="array")
            self.masks[name] = torch.tensor(~np.isnan(matrix))
            self.weights[name] = torch.tensor(np.nan_to_num(matrix), requires_grad=True)
        for name, population in model.populations.items():
            if population.info.role != "input":
                self.biases[name] = torch.tensor(population.get_biases(), requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights.values(), *self.biases.values()]

    def forward(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        activity = {}
        for level in self.model.network.levels:
            for population in level:
                if population.role == "input":
                    activity[population.name] = X
                    continue
                u = self.biases[population.name].expand(X.shape[0], -1)
                for name, projection in self.model.projections.items():
                    if projection.post == population.name:
                        u = u + activity[projection.pre] @ (self.weights[name] * self.masks[name])
                activity[population.name] = TORCH_ACTIVATIONS[population.activation](u)
        return activity

    def loss(self, tick: int) -> torch.Tensor:
        """The loss of the batch the model consumes at ``tick``."""
        index = self.model.stream.indices(tick)
        X = torch.tensor(self.model.dataset.X_train[index])
        T = torch.tensor(self.model.targets_train[index])
        out = self.forward(X)[self.model.network.output.name]
        if self.model.dataset.loss == "cross_entropy":
            return F.cross_entropy(out, T.argmax(dim=1))
        return F.mse_loss(out, T)

    def synapse_values(self, name: str, tensor: torch.Tensor) -> np.ndarray:
        info = self.model.projections[name].info
        return tensor.detach().numpy()[info.pre_idx, info.post_idx]
