"""An executor's learned and running state as a flat map of arrays, and back.

A snapshot must capture everything a later tick depends on (optimizer moments, guide
statistics, meta-controller state, the coupling's groups, cycle-closing activity...) and put it
back into a freshly built executor of the same scenario, so that the run continues exactly.
Each stateful class names the attributes that hold such state in ``snapshot_attrs``; this module
walks them (tensors, arrays, numbers, None, lists, dicts, torch modules and optimizers, and
objects with their own ``snapshot_attrs``) into ``{"a/b/0/c": array}`` and restores them.  Objects
may define ``after_load()`` to rebuild what derives from the restored state.  Only numbers
and arrays are stored: nothing is pickled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["collect_state", "restore_state"]

_MISSING = object()


def collect_state(root: Any) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
    """The state below ``root``: ``(values, kinds)``, where ``kinds`` says what each value was
    (tensor, array, int, float, bool, none), so that it is restored as the same type."""
    values: dict[str, np.ndarray | None] = {}
    kinds: dict[str, str] = {}
    _collect(root, "", values, kinds)
    return values, kinds


def _collect(value: Any, key: str, values: dict, kinds: dict) -> None:
    if value is None:
        values[key], kinds[key] = None, "none"
    elif isinstance(value, torch.Tensor):
        values[key], kinds[key] = value.detach().cpu().numpy().copy(), "tensor"
    elif isinstance(value, np.ndarray):
        values[key], kinds[key] = value.copy(), "array"
    elif isinstance(value, (bool, np.bool_)):
        values[key], kinds[key] = np.asarray(value, dtype=bool), "bool"
    elif isinstance(value, (int, np.integer)):
        values[key], kinds[key] = np.asarray(value, dtype=np.int64), "int"
    elif isinstance(value, np.floating):
        values[key], kinds[key] = np.asarray(value, dtype=np.float64), "numpy_float"
    elif isinstance(value, float):
        values[key], kinds[key] = np.asarray(value, dtype=np.float64), "float"
    elif isinstance(value, dict):
        for name, item in value.items():
            _collect(item, f"{key}/{name}", values, kinds)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _collect(item, f"{key}/{i}", values, kinds)
    elif isinstance(value, torch.nn.Module):
        for name, tensor in value.state_dict().items():
            _collect(tensor, f"{key}/{name}", values, kinds)
    elif isinstance(value, torch.optim.Optimizer):
        for i, parameter in enumerate(_parameters(value)):
            for name, item in value.state.get(parameter, {}).items():
                _collect(item, f"{key}/{i}/{name}", values, kinds)
    elif hasattr(value, "snapshot_attrs"):
        for name in value.snapshot_attrs:
            item = getattr(value, name, _MISSING)
            if item is not _MISSING:
                _collect(item, f"{key}/{name}", values, kinds)
    else:
        raise TypeError(f"no state can be collected from {type(value).__name__} at '{key}'")


def _parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def restore_state(root: Any, values: dict[str, Any], kinds: dict[str, str], device: torch.device | None = None) -> None:
    """Put state collected by :func:`collect_state` back into ``root`` (a freshly built object of
    the same structure); tensors that did not exist yet are created on ``device``."""
    tree: dict = {}
    for key, value in values.items():
        node = tree
        *parents, last = key.split("/")[1:]
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = (value, kinds[key])
    _restore(root, tree, device or torch.device("cpu"))


def _leaf(stored: tuple, current: Any, device: torch.device) -> Any:
    value, kind = stored
    if kind == "none":
        return None
    if kind == "tensor":
        tensor = torch.from_numpy(np.array(value))
        if isinstance(current, torch.Tensor) and current.shape == tensor.shape and current.dtype == tensor.dtype:
            return current.copy_(tensor)  # in place: whatever holds this tensor keeps seeing it
        return tensor.to(current.device if isinstance(current, torch.Tensor) else device)
    if kind == "array":
        return np.array(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    if kind == "numpy_float":
        return np.float64(value)
    return float(value)


def _restore(target: Any, tree: dict, device: torch.device) -> None:
    if isinstance(target, torch.nn.Module):
        target.load_state_dict({name: _leaf(tree[name], None, device) for name in tree})
    elif isinstance(target, torch.optim.Optimizer):
        for i, parameter in enumerate(_parameters(target)):
            if str(i) in tree:
                target.state[parameter] = {name: _leaf(item, None, parameter.device)
                                           for name, item in tree[str(i)].items()}
    elif isinstance(target, dict):
        for name in list(target):
            _restore_item(target, name, str(name), tree, device, lambda k, v: target.__setitem__(k, v))
    elif isinstance(target, list):
        for i in range(len(target)):
            _restore_item(target, i, str(i), tree, device, lambda k, v: target.__setitem__(k, v))
    elif hasattr(target, "snapshot_attrs"):
        if hasattr(target, "before_load"):
            target.before_load(tree)
        for name in target.snapshot_attrs:
            if name in tree and isinstance(getattr(type(target), name, None), property):
                setattr(target, name, _plain(tree[name], device))  # a computed view of the state
            elif name in tree:
                _restore_item(target, name, name, tree, device, lambda k, v: setattr(target, k, v), attribute=True)
        if hasattr(target, "after_load"):
            target.after_load()
    else:
        raise TypeError(f"no state can be restored into {type(target).__name__}")


def _plain(tree: Any, device: torch.device) -> Any:
    """A subtree as plain values: leaves, dicts, and lists where the keys are 0, 1, 2..."""
    if isinstance(tree, tuple):
        return _leaf(tree, None, device)
    if tree and all(key.isdigit() for key in tree):
        return [_plain(tree[str(i)], device) for i in range(len(tree))]
    return {key: _plain(value, device) for key, value in tree.items()}


def _restore_item(container: Any, name: Any, key: str, tree: dict, device: torch.device, assign,
                  attribute: bool = False) -> None:
    if key not in tree:
        return
    current = getattr(container, name, None) if attribute else container[name]
    stored = tree[key]
    if isinstance(stored, tuple):
        assign(name, _leaf(stored, current, device))
    elif current is None or isinstance(current, (torch.Tensor, np.ndarray)):
        raise TypeError(f"state '{key}' was a container when collected, and is a leaf now")
    else:
        _restore(current, stored, device)
