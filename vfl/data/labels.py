"""Classification labels as class indices, with a stable sorted class list that the schema keeps.

Classes are text ('0', '1', 'no', 'yes'). When every class reads as a number they sort numerically
('2' before '10'), otherwise as text; ties ('1' and '1.0') are broken by the text, so the order never
depends on row order or hashing. Index k always means classes[k]; for binary tasks classes[1] is positive, by
default the second in that order, or the one a job names (`positive_class`, `with_positive_class`).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from vfl.data.columns import Where, category_text
from vfl.errors import DataError, quote

TASKS = ("binary", "multiclass", "regression")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def sorted_classes(values: Iterable[object]) -> list[str]:
    """Distinct class texts, numerically sorted when all are numbers, otherwise sorted as text."""
    distinct = {category_text(v) for v in values}
    numbers = {t: _number(t) for t in distinct}
    if all(n is not None for n in numbers.values()):
        return sorted(distinct, key=lambda t: (numbers[t], t))
    return sorted(distinct)


def encode_labels(values: Sequence[object], classes: Sequence[str] | None = None,
                  where: Where | None = None) -> tuple[np.ndarray, list[str]]:
    """Class indices (int64) for `values`, and the class list used (derived when `classes` is None).

    A value outside a given class list raises DataError naming its row (and file/column with `where`).
    """
    texts = [category_text(v) for v in values]
    classes = sorted_classes(texts) if classes is None else [str(c) for c in classes]
    position = {c: k for k, c in enumerate(classes)}
    out = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        k = position.get(text)
        if k is None:
            problem = f"label {quote(text)} is not one of the trained classes {classes}"
            raise where.error(i, problem) if where else DataError(f"row {i + 1}: {problem}")
        out[i] = k
    return out, classes


def decode_labels(indices: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class texts (object array) for class indices."""
    lookup = np.asarray(list(classes), dtype=object)
    return lookup[np.asarray(indices, dtype=np.int64)]


def check_class_count(classes: list[str], task: str | None, where: Where) -> None:
    """A binary task needs exactly two classes, a multiclass task at least two."""
    if task == "binary" and len(classes) != 2:
        raise DataError(f"{where.file}: column {where.column!r}: a binary task needs exactly 2 label values, "
                        f"found {len(classes)}: {classes[:10]}")
    if task == "multiclass" and len(classes) < 2:
        raise DataError(f"{where.file}: column {where.column!r}: a multiclass task needs at least 2 label "
                        f"values, found {len(classes)}: {classes[:10]}")


def with_positive_class(classes: list[str], positive: str | None, where: Where) -> list[str]:
    """A binary task's two classes with `positive` second (index 1 is what the model predicts the probability of).

    None keeps the sorted order. A value that is not one of the two classes is a DataError listing them.
    """
    if positive is None:
        return classes
    if positive not in classes:
        raise DataError(f"{where.file}: column {where.column!r}: positive_class {quote(positive)} is not one of its "
                        f"label values {classes}")
    return [c for c in classes if c != positive] + [positive]
