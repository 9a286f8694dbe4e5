"""Field paths: how a location inside a scenario is written in messages (``projections[1].connectivity.k``).

Pydantic locates an error inside a tagged union with the member's tag after the union's field
(``('task', 'npz', 'path')``); the path a person reads leaves the tag out (``task.path``).  The
loader (for pydantic's errors) and validation (for its own findings) write paths the same way.
"""

from __future__ import annotations

from typing import Any, Iterable, get_args, get_origin

from pydantic import BaseModel

__all__ = ["field_path", "format_path", "shorten", "strip_union_tags"]


def format_path(loc: Iterable) -> str:
    """``('populations', 1, 'size')`` -> ``'populations[1].size'`` (a key of more than 80
    characters shortened, see :func:`shorten`)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{shorten(str(part))}" if text else shorten(str(part)))
    return text


def field_path(loc: Iterable, model: type[BaseModel]) -> str:
    """The path of a pydantic location in ``model``, without the tags of tagged unions."""
    return format_path(strip_union_tags(tuple(loc), model)[0])


def strip_union_tags(loc: tuple, model: type[BaseModel]) -> tuple[tuple, type | None]:
    """Remove the tags pydantic inserts for discriminated unions; return the clean loc and the
    model class that owns the last element (to list its keys in hints)."""
    clean: list = []
    current: Any = model
    owner: type | None = model
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        candidates = _union_members(current)
        if candidates is not None and isinstance(part, str):
            tagged = [m for m in candidates if _tag_of(m) == part]
            if tagged:
                current = tagged[0]
                owner = current
                continue
        clean.append(part)
        current = _child_type(current, part)
        section = _optional_model(current)
        if section is not None:
            owner = section
    return tuple(clean), owner


def _optional_model(annotation: Any) -> type | None:
    """The section model of ``annotation``: a model class, or X of Optional[X] (an optional section
    such as a guide's ``evolution``), else None."""
    annotation = _unwrap(annotation)
    args = [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and len(args) == 1 and len(get_args(annotation)) == 2:
        annotation = args[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is not None and getattr(annotation, "__metadata__", None) is not None:
        annotation = get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> list | None:
    annotation = _unwrap(annotation)
    args = [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
    if len(args) == 1 and len(get_args(annotation)) == 2:  # Optional[a tagged union]
        return _union_members(args[0])
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return models if len(models) > 1 else None


def _tag_of(model: type[BaseModel]) -> str | None:
    for field in ("rule", "kind"):
        info = model.model_fields.get(field)
        if info is not None:
            args = get_args(info.annotation)
            if len(args) == 1 and isinstance(args[0], str):
                return args[0]
    return None


def _child_type(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and len(args) == 1 and get_origin(annotation) is not list:
        annotation = _unwrap(args[0])  # Optional[X]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        info = annotation.model_fields.get(part)
        return info.annotation if info is not None else None
    if get_origin(annotation) in (list, tuple) and isinstance(part, int):
        inner = get_args(annotation)
        return inner[0] if get_origin(annotation) is list else (inner[part] if part < len(inner) else None)
    return None


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was: a message quotes what
    a file wrote, and a file may write a megabyte on one line."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}... ({len(text):,} characters)"
