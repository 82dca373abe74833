"""A dataset as a node config names it: where the table is and which columns are the ID, label and features."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vfl.data.ids import IdFormat


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    path: Path
    id_column: str
    label: str | None = None
    features: tuple[str, ...] | None = None  # None: every column except the id and label
    categorical: tuple[str, ...] = ()
    # how this party writes its IDs into the form the parties agreed on (vfl/data/ids.py); None: verbatim
    id_format: IdFormat | None = None
    # feature column -> 'median', 'mean' or a constant for its missing cells (fixed in training, see vfl/data)
    missing: dict[str, object] = field(default_factory=dict)
