"""Reading policy files: default.toml, then tenants/<tenant>.toml, then agents/<agent>.toml,
deep-merged (tables merge, lists and scalars replace) and validated.

Files are re-read when their modification time changes, so an edited policy applies to the next
decision without a restart. A broken file is reported as a ``PolicyError`` naming the file and
key; the engine turns that into a denial for exactly the agents the file applies to.
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .models import Policy

BUNDLED_DEFAULT = Path(__file__).with_name("default.toml")


@dataclass(frozen=True)
class PolicyError:
    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.key} " if self.key else ""
        return f"invalid policy: {where}{self.problem} ({self.file})"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _expand(value: Any, domain: str) -> Any:
    if isinstance(value, str):
        return value.replace("{domain}", domain)
    if isinstance(value, list):
        return [_expand(v, domain) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, domain) for k, v in value.items()}
    return value


class PolicyStore:
    def __init__(self, directory: Path, domain: str) -> None:
        self.directory = directory
        self.domain = domain
        self._cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any] | PolicyError | None]] = {}
        self._lock = threading.Lock()
        self._reloads: list[tuple[str, str]] = []
        # (tenant, agent) -> (stat keys of the layers it was built from, result)
        self._effective: dict[tuple[str, str], tuple[tuple[object, ...], Policy | PolicyError]] = {}

    def _read(self, path: Path) -> dict[str, Any] | PolicyError | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        # Size and inode too: an editor that replaces the file within one clock tick still counts.
        mtime = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            hit = self._cache.get(path)
            if hit and hit[0] == mtime:
                return hit[1]
        try:
            blob = path.read_bytes()
            if hit is not None:  # changed since this process last read it: an audited reload
                self._reloads.append((self._name(path), hashlib.sha256(blob).hexdigest()))
            data: dict[str, Any] | PolicyError = _expand(tomllib.loads(blob.decode("utf-8")), self.domain)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            data = PolicyError(self._name(path), "", f"is not valid TOML: {e}")
        except OSError as e:
            data = PolicyError(self._name(path), "", f"cannot be read: {e}")
        with self._lock:
            self._cache[path] = (mtime, data)
        return data

    def drain_reloads(self) -> list[tuple[str, str]]:
        """(file, sha256) of every policy file re-read since the last call, for the audit log."""
        with self._lock:
            out, self._reloads = self._reloads, []
        return out

    def _name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.directory.parent))
        except ValueError:
            return str(path)

    def layers(self, tenant: str, agent: str) -> list[Path]:
        d = self.directory
        return [d / "default.toml", d / "tenants" / f"{tenant}.toml", d / "agents" / f"{agent}.toml"]

    def effective(self, tenant: str, agent: str) -> Policy | PolicyError:
        """The policy for one agent, or the first error that makes it unusable (deny).

        Merging and validating costs ~100 µs; it is redone only when one of the agent's files
        changed (each decision still stats them, so edits apply at once)."""
        paths = self.layers(tenant, agent)
        layers = [(p, self._read(p)) for p in paths]
        with self._lock:
            key = tuple(self._cache[p][0] if data is not None and p in self._cache else None for p, data in layers)
        with self._lock:
            hit = self._effective.get((tenant, agent))
        if hit is not None and hit[0] == key:
            return hit[1]
        result = self._merge(layers)
        with self._lock:
            self._effective[(tenant, agent)] = (key, result)
        return result

    def _merge(self, layers: list[tuple[Path, dict[str, Any] | PolicyError | None]]) -> Policy | PolicyError:
        merged: dict[str, Any] = {}
        default = layers[0][0]
        if layers[0][1] is None:
            return PolicyError(self._name(default), "", "is missing: without a default policy every send is denied")
        for path, data in layers:
            if isinstance(data, PolicyError):
                return data
            if data is None:
                continue
            # Validate each layer on its own first, so the error names the file that is wrong.
            err = _validate(deep_merge(merged, data), self._name(path))
            if err:
                return err
            merged = deep_merge(merged, data)
        return Policy.model_validate(merged)


def _validate(data: dict[str, Any], file: str) -> PolicyError | None:
    try:
        Policy.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "is not a known key"
        return PolicyError(file, key, msg)
    return None
