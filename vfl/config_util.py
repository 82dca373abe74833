"""Small helpers to read YAML into typed dataclasses with errors that name the offending key.

Parsing is strict: a key given twice in one mapping is refused (YAML would silently keep the last one), numbers
must be finite (YAML's ``.nan`` and ``.inf`` are floats), and an error quotes at most :data:`QUOTE_CHARS` of
the value it refuses, so a peer's 30 MB string cannot become a 30 MB error.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from vfl.errors import QUOTE_CHARS, ConfigError, quote, shorten


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that appears twice in one mapping.

    Last-wins would let a reviewer read one value while the parser uses another (``lr: 0.01`` at the top of a
    spec, ``lr: 10`` further down). Keys brought in by a merge (``<<: *defaults``) may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class refuses it with its own error
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"found duplicate key {quote(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def strict_load(text: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused (:class:`StrictLoader`)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """The YAML mapping in `text`, or a ConfigError naming `source` (a file, "job spec", ...)."""
    try:
        data = strict_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {shorten(str(exc), 1000)}") from None
    except (ValueError, OverflowError) as exc:  # a scalar PyYAML cannot convert (a 5000-digit int, a bad date)
        raise ConfigError(f"{source}: not valid YAML: {shorten(str(exc), 1000)}") from None
    except RecursionError:  # deeply nested flow collections ([[[[...]]]]) exhaust PyYAML's recursive parser
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_yaml(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None
    return yaml_mapping(text, f"{what} {path}")


class Section:
    """A mapping read from YAML; tracks the key path so every error names where it happened."""

    def __init__(self, data: Any, where: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
        self.data = data
        self.where = where
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self._used.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                raise ConfigError(f"{self.key(name)}: required key is missing")
            return default
        return self.data[name]

    def str(self, name: str, default: str | None = None, required: bool = False,
            choices: Iterable[str] | None = None) -> str | None:
        value = self._get(name, default, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key(name)}: must be a non-empty string, got {quote(value)}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.key(name)}: must be one of {sorted(choices)}, got {quote(value)}")
        return value

    def int(self, name: str, default: int | None = None, required: bool = False,
            min_value: int | None = None, max_value: int | None = None) -> int | None:
        value = self._get(name, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(name)}: must be an integer, got {quote(value)}")
        if min_value is not None and value < min_value:
            raise ConfigError(f"{self.key(name)}: must be >= {min_value}, got {quote(value)}")
        if max_value is not None and value > max_value:
            raise ConfigError(f"{self.key(name)}: must be <= {max_value}, got {quote(value)}")
        return value

    def float(self, name: str, default: float | None = None, required: bool = False,
              min_value: float | None = None, max_value: float | None = None) -> float | None:
        value = self._get(name, default, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self.key(name)}: must be a number, got {quote(value)}")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            raise ConfigError(f"{self.key(name)}: must be a finite number, got {quote(value)}") from None
        if not math.isfinite(value):  # NaN passes every comparison below, and infinity is never meant
            raise ConfigError(f"{self.key(name)}: must be a finite number, got {value}")
        if min_value is not None and value < min_value:
            raise ConfigError(f"{self.key(name)}: must be >= {min_value}, got {value}")
        if max_value is not None and value > max_value:
            raise ConfigError(f"{self.key(name)}: must be <= {max_value}, got {value}")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self._get(name, default, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: must be true or false, got {quote(value)}")
        return value

    def list(self, name: str, default: list | None = None, required: bool = False) -> list:
        value = self._get(name, default, required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"{self.key(name)}: must be a list, got {type(value).__name__}")
        return value

    def str_list(self, name: str, default: list | None = None, required: bool = False) -> list[str]:
        values = self.list(name, default, required)
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v:
                raise ConfigError(f"{self.key(name)}[{i}]: must be a non-empty string, got {quote(v)}")
        return values

    def section(self, name: str, required: bool = False) -> "Section":
        return Section(self._get(name, {}, required), self.key(name))

    def raw(self, name: str, default: Any = None) -> Any:
        return self._get(name, default, False)

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self._used, key=str)  # YAML keys may be numbers, null or booleans too
        if unknown:
            where = self.key(shorten(str(unknown[0]), QUOTE_CHARS))
            raise ConfigError(f"{where}: unknown key (known: {sorted(self._used)})")


# ------------------------------------------------------------------ names shared by node configs and job specs

_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_IMPORT_PATH = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


def check_name(value: str, where: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(f"{where}: {quote(value)} is not a valid party name "
                          "(lowercase letters, digits, '-' and '.', at most 63 characters)")
    return value


def check_model_name(value, where: str) -> str:
    """A name under a node config's `models:`, as a job spec's `module:` refers to it."""
    if not isinstance(value, str) or not _MODEL_NAME.match(value):
        raise ConfigError(f"{where}: {quote(value)} is not a valid model name "
                          "(a letter or '_', then letters, digits, '_', '.', '-'; at most 63 characters)")
    return value


def check_import_path(value, where: str) -> str:
    if not isinstance(value, str) or not _IMPORT_PATH.match(value):
        raise ConfigError(f"{where}: {quote(value)} must be an import path 'package.module:factory'")
    return value


def check_address(value: str, where: str) -> str:
    if not _ADDRESS.match(value):
        raise ConfigError(f"{where}: {quote(value)} is not host:port")
    port = int(value.rsplit(":", 1)[1])
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} is out of range")
    return value
