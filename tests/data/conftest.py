"""Helpers for the data-layer tests: small files written into tmp_path."""
from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def write_text(tmp_path: Path):
    """write_text(name, text) -> path; '.gz' names are gzip-compressed."""
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        data = text.encode("utf-8")
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path
    return write


@pytest.fixture
def write_parquet(tmp_path: Path):
    """write_parquet(name, frame) -> path, written by pyarrow with the frame's dtypes."""
    def write(name: str, frame: pd.DataFrame) -> Path:
        path = tmp_path / name
        frame.to_parquet(path, index=False, engine="pyarrow")
        return path
    return write


def assert_names(message: str, *parts: str) -> None:
    """Every expected fragment (file, column, row, id, value) appears in the error message."""
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
