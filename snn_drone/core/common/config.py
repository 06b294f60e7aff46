"""Configuration: where the YAML files live, and typed dataclasses loaded from them.

Every component has one config dataclass (fields typed, defaulted and documented). YAML files in
config/ override the defaults. Loading is strict: an unknown key or a value of the wrong type fails
at once with the key, the value and the expected type.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PACKAGE = "snn_drone"


def package_root() -> Path:
    """The source tree's root (the folder holding config/, checkpoints/, launch/) when the package
    runs from a checkout or an editable install; an installed copy has its files in share_dirs()."""
    return Path(__file__).resolve().parents[3]


def share_dirs() -> list[Path]:
    """Every existing ``<prefix>/share/snn_drone`` that may hold the installed files: ament_index's
    (a sourced colcon workspace or ROS install), each of $AMENT_PREFIX_PATH, then this Python's prefix
    (a pip install into a virtual environment)."""
    found = []
    try:
        from ament_index_python.packages import get_package_share_directory
        found.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # ament_index_python absent, or the package not in the index
        pass
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    found += [Path(p) / "share" / PACKAGE for p in prefixes]
    return [p for p in dict.fromkeys(found) if p.is_dir()]


def path_candidates(p: str | os.PathLike) -> list[Path]:
    """Where a package-relative path such as ``checkpoints/guide.pt`` is looked for, in order: as
    given (absolute, or relative to the working directory), the source tree, each share folder."""
    path = Path(p).expanduser()
    if path.is_absolute():
        return [path]
    return list(dict.fromkeys([path, package_root() / path, *(d / path for d in share_dirs())]))


def resolve_path(p: str | os.PathLike) -> Path:
    """The first of :func:`path_candidates` that exists; ``p`` unchanged if none does."""
    for cand in path_candidates(p):
        if cand.exists():
            return cand
    return Path(p)


def find_file(p: str | os.PathLike, what: str = "file") -> Path:
    """:func:`resolve_path` for a file that must exist: FileNotFoundError says where it looked."""
    cands = path_candidates(p)
    for cand in cands:
        if cand.is_file():
            return cand
    where = ", ".join(str(c if c.is_absolute() else Path.cwd() / c) for c in cands)
    raise FileNotFoundError(f"{what} {str(p)!r} not found: looked in {where}")


def config_dir() -> Path:
    """The package's config/ folder.

    Order: $SNN_DRONE_CONFIG_DIR; the source tree (editable pip install or a checkout); the
    ament share folder of a colcon/pip install (<prefix>/share/snn_drone/config).
    """
    env = os.environ.get("SNN_DRONE_CONFIG_DIR")
    if env:
        return Path(env)
    cands = [package_root() / "config", *(d / "config" for d in share_dirs())]
    for c in cands:
        if c.is_dir():
            return c
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} config folder: looked in $SNN_DRONE_CONFIG_DIR (unset), "
        + ", ".join(map(str, cands)) + f" and <prefix>/share/{PACKAGE}/config of $AMENT_PREFIX_PATH "
        "and this Python's prefix; set SNN_DRONE_CONFIG_DIR")


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping. A ROS parameter file (`node: {ros__parameters: {...}}`) is accepted
    when it holds a single node, and its parameters are returned."""
    p = find_file(path, "config file")
    with open(p) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    if len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict) and set(only) == {"ros__parameters"}:
            data = only["ros__parameters"]
    return data


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise TypeError(f"config key '{key}': value {value!r} is not {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"config key '{key}': value {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"config key '{key}': expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key '{key}': expected a list ({_type_name(tp)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"config key '{key}': expected {len(args)} values, got {len(value)}: {value!r}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            a = args[0] if args else Any
            items = [_coerce(v, a, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"config key '{key}': expected bool, got {value!r} ({type(value).__name__})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"config key '{key}': expected int, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"config key '{key}': expected float, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"config key '{key}': expected str, got {value!r} ({type(value).__name__})")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise TypeError(f"config key '{key}': expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def from_dict(cls: type[T], data: dict, where: str = "", source: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise with the key.

    ``where`` prefixes key names (nested sections); ``source`` (a file name) is appended to errors.
    """
    if source:
        try:
            return from_dict(cls, data, where)
        except (KeyError, TypeError, ValueError) as e:
            msg = e.args[0] if e.args else str(e)
            raise type(e)(f"{msg} (in {source})") from None
    if not isinstance(data, dict):
        raise TypeError(f"config{' ' + where if where else ''}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if unknown:
        raise KeyError(f"unknown config key(s) {[prefix + k for k in unknown]} for {cls.__name__}; "
                       f"known keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj) -> dict:
    """Plain-data view of a config dataclass (tuples become lists), for YAML and checkpoints."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(obj)


def load(cls: type[T], path: str | os.PathLike | None = None, overrides: dict | None = None) -> T:
    """Defaults of ``cls``, overridden by the YAML at ``path`` and then by ``overrides``."""
    data: dict = {}
    if path is not None:
        data.update(load_yaml(path))
    if overrides:
        data.update(overrides)
    return from_dict(cls, data, source=Path(path).name if path else "")


def diff(a, b) -> list[str]:
    """Keys whose values differ between two configs (as dicts or dataclasses), 'key: a != b'."""
    da = a if isinstance(a, dict) else to_dict(a)
    db = b if isinstance(b, dict) else to_dict(b)
    out = []
    for k in sorted(set(da) | set(db)):
        va, vb = da.get(k, "<absent>"), db.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{k}.{line}" for line in diff(va, vb)]
        elif va != vb:
            out.append(f"{k}: {va!r} != {vb!r}")
    return out
