"""A dataset as a node config names it: where the table is and which columns are the ID, label and features."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    path: Path
    id_column: str
    label: str | None = None
    features: tuple[str, ...] | None = None  # None: every column except the id and label
    categorical: tuple[str, ...] = ()
