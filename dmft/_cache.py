"""A content-addressed on-disk cache of results: configuration hash -> :class:`dmft.Result` file.

The key of a run is the SHA-256 of the canonical JSON (sorted keys, no spaces) of::

    {"run": kind, "model": ..., "data": ..., "training": ..., "options": ..., "version": dmft.__version__}

where the configurations are written by :func:`dmft._serialize.config_to_dict` and ``kind`` names
what computes the answer (``"solve"``, ``"simulate"`` or ``"callable:module.qualname"``). Every field
of every configuration is in the key: a learning-rate schedule rate by rate, a
:class:`dmft.GradientFlow`'s ``time``, ``save_at`` and ``rtol``, the run options (sizes, seeds,
solver options). Equal configurations give equal keys whatever object produced them; a new package
version starts afresh.

A finished run is stored as ``<folder>/<key[:2]>/<key>.npz`` (:meth:`dmft.Result.save`); a run that
diverged as ``<key>.diverged.json`` holding the reason, so that neither is computed twice. Every
write goes to a temporary file in the same folder and is then moved into place with
:func:`os.replace` (atomic on POSIX and Windows): an interrupted sweep never leaves a half-written
entry, and concurrent writers of the same key simply overwrite each other with equal content.

Where the folder is (:func:`cache_folder`): the ``cache=`` argument, else the ``DMFT_CACHE_DIR``
environment variable, else the user's cache directory (``$XDG_CACHE_HOME/dmft`` or
``~/.cache/dmft`` on Linux, ``~/Library/Caches/dmft`` on macOS, ``%LOCALAPPDATA%\\dmft\\Cache`` on
Windows).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._serialize import config_to_dict
from .result import Result

__all__ = ["CacheEntry", "ResultCache", "cache_folder", "cache_key", "canonical_json"]

ENVIRONMENT_VARIABLE = "DMFT_CACHE_DIR"


def cache_folder(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$DMFT_CACHE_DIR``, else the platform's user
    cache directory followed by ``dmft`` (see the module docstring). The folder is not created."""
    if cache is not None:
        return Path(cache).expanduser()
    from_environment = os.environ.get(ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "dmft" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "dmft"
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base and os.path.isabs(base) else home / ".cache") / "dmft"


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (numpy scalars and arrays converted); raises naming ``where``."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # JSON has no inf / nan: spell them so that they still hash (e.g. depth = inf)
        return value if math.isfinite(value) else repr(value)
    raise TypeError(
        f"{where} = {value!r} cannot be written as JSON, so it cannot be part of a cache key; "
        "pass numbers, strings, booleans or lists of them (or use_cache=False)"
    )


def canonical_json(payload: Any) -> str:
    """Sorted-key, space-free JSON of ``payload`` (numpy scalars converted, inf written ``"inf"``)."""
    return json.dumps(_plain(payload, "value"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def cache_key(kind: str, model, data, training, options: Mapping[str, Any] | None = None) -> str:
    """SHA-256 hex digest of the canonical JSON of ``(kind, model, data, training, options, version)``."""
    from . import __version__

    payload = {
        "run": kind,
        "model": config_to_dict(model),
        "data": config_to_dict(data),
        "training": config_to_dict(training),
        "options": _plain(dict(options or {}), "run_options"),
        "version": __version__,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """What the cache holds for one key: a result, or the reason the run diverged."""

    result: Result | None = None
    diverged: str | None = None


class ResultCache:
    """Results on disk under ``folder`` by key (see the module docstring).

    ``hits``, ``misses`` and ``writes`` count this object's lookups and stores.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / key[:2] / f"{key}{suffix}"

    def get(self, key: str, *, curves_only: bool = False, arrays=()) -> CacheEntry | None:
        """The stored entry of ``key``, or ``None`` (an unreadable file counts as missing).

        ``curves_only`` reads the configuration, ``time``, ``status``, ``message`` and the loss
        curves but not ``arrays`` (a result's order parameters can be most of its file): what a
        sweep's Dataset needs; with ``arrays`` (names) those arrays too, where stored.
        """
        result_path = self._path(key, ".npz")
        diverged_path = self._path(key, ".diverged.json")
        entry = None
        try:
            if result_path.exists():
                entry = CacheEntry(result=Result.load(result_path, arrays=tuple(arrays) if curves_only else True))
            elif diverged_path.exists():
                entry = CacheEntry(diverged=json.loads(diverged_path.read_text())["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            entry = None  # damaged by hand or by another program: compute again and overwrite
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, entry: CacheEntry) -> Path:
        """Store ``entry`` under ``key`` atomically (temporary file, then :func:`os.replace`)."""
        if entry.result is not None:
            return self._write(key, ".npz", entry.result.save)
        text = json.dumps({"reason": entry.diverged})
        return self._write(key, ".diverged.json", lambda path: Path(path).write_text(text))

    def _write(self, key: str, suffix: str, write) -> Path:
        target = self._path(key, suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a name no other writer uses, in the same folder (os.replace must not cross file systems)
        temporary = target.parent / f".{key[:16]}.{uuid.uuid4().hex}.tmp"
        try:
            write(temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.writes += 1
        return target
