"""A table's schema: feature names, one-hot vocabularies and label classes, saved with each model part.

Predictions on new rows must see the columns training saw: the saved schema is re-applied on load.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Schema:
    id_column: str
    numeric: list[str]                              # numeric feature columns, in order
    categorical: dict[str, list[str]] = field(default_factory=dict)  # column -> sorted vocabulary
    label: str | None = None
    label_classes: list[str] | None = None          # classification labels, sorted; None for regression

    @property
    def feature_names(self) -> list[str]:
        """Numeric columns, then one-hot columns named 'column=value'."""
        names = list(self.numeric)
        for column, values in self.categorical.items():
            names += [f"{column}={v}" for v in values]
        return names

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @staticmethod
    def from_json(text: str) -> "Schema":
        data = json.loads(text)
        return Schema(**data)
