"""A table's schema: feature names, one-hot vocabularies and label classes, saved with each model part.

Predictions on new rows must see the columns training saw: pass the saved schema to `load_party_table`
and the same numeric columns, the same one-hot columns (same vocabulary, same order), the same label
classes and the same fills for missing cells are produced. Feature order: numeric columns in table order, then each categorical column (in
table order) expanded to 'column=value' for its sorted vocabulary.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vfl.data.atomic import atomic_write_text
from vfl.errors import DataError


@dataclass
class Schema:
    id_column: str
    numeric: list[str]                                               # numeric feature columns, in order
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> sorted vocabulary
    label: str | None = None
    label_classes: list[str] | None = None                           # sorted classes; None for regression
    # column -> the text that replaced its missing cells in training (dataset `missing:`); prediction reuses it
    fill: dict[str, str] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Numeric columns, then one-hot columns named 'column=value'."""
        names = list(self.numeric)
        for column, values in self.categorical.items():
            names += [f"{column}={v}" for v in values]
        return names

    @property
    def columns(self) -> list[str]:
        """The table columns the schema reads (id, numeric, categorical; not the label)."""
        return [self.id_column, *self.numeric, *self.categorical]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)

    @staticmethod
    def from_json(text: str, source: str = "schema") -> "Schema":
        """Parse and check a saved schema; any defect is a DataError naming `source` and the key."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: not valid JSON: {exc}") from None
        return Schema(**_checked(data, source))

    def save(self, path: str | Path) -> Path:
        """Write the schema as JSON atomically (temp file in the same folder, then rename)."""
        return atomic_write_text(Path(path), self.to_json())

    @staticmethod
    def load(path: str | Path) -> "Schema":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read schema: {exc}") from None
        return Schema.from_json(text, source=path.name)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _checked(data: object, source: str) -> dict:
    """The constructor arguments, after checking every key's type."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: a schema must be a JSON object")
    known = {"id_column", "numeric", "categorical", "label", "label_classes", "fill"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"{source}: unknown key {unknown[0]!r} (known: {sorted(known)})")
    checks = {
        "id_column": lambda v: isinstance(v, str) and bool(v),
        "numeric": _is_str_list,
        "categorical": lambda v: isinstance(v, dict) and all(_is_str_list(x) for x in v.values()),
        "label": lambda v: v is None or isinstance(v, str),
        "label_classes": lambda v: v is None or _is_str_list(v),
        "fill": lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
    }
    for key in ("id_column", "numeric"):
        if key not in data:
            raise DataError(f"{source}: missing key {key!r}")
    for key, ok in checks.items():
        if key in data and not ok(data[key]):
            raise DataError(f"{source}: key {key!r} has the wrong type: {data[key]!r}")
    return data
