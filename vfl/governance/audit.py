"""The data audit of one dataset, before any of it is used: schema, missing values, constant columns, personal
data, and the re-identification risk of its demographic columns.

`audit_frame` works on the table as read (vfl.data.readers.read_frame) and the dataset's config; `vfl audit` prints
the report, and every job runs it at every party when it opens (vfl/job/party_data.py), refusing feature columns
that look like personal data unless the party's node policy names them in `allow_pii_columns`. The report stays
with the party that made it: nothing of it is sent to a peer.
"""
from __future__ import annotations

import collections
import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from vfl.data.columns import category_text, is_missing
from vfl.data.dataset import DatasetConfig
from vfl.governance.detectors import Finding, detect, name_tokens, sample

#: at a job's open, the column statistics and detectors of a table with more rows than this look at an even sample
#: of this many rows (the row count and the quasi-identifier k always cover every row); `vfl audit` reads all
JOB_AUDIT_MAX_ROWS = 100_000
#: ...and at most this many cells (rows x columns) in that sample, so a wide table's sample stays small too
JOB_AUDIT_MAX_CELLS = 1 << 20
#: a column whose most frequent value covers at least this share of its non-missing rows is "near-constant"
NEAR_CONSTANT_SHARE = 0.99
#: groups smaller than this count as re-identifiable in the quasi-identifier summary (the usual k = 5)
SMALL_GROUP = 5
#: column-name tokens of the demographic columns that, combined, can single a person out (quasi-identifiers)
DEMOGRAPHIC_TOKENS = frozenset({"age", "sex", "gender", "zip", "zipcode", "postcode", "postal", "race", "ethnicity",
                                "ethnic", "marital", "marriage", "married", "education", "occupation", "nationality",
                                "country", "city", "region", "religion", "birth", "yob", "dob", "language"})


@dataclass(frozen=True)
class ColumnReport:
    name: str
    role: str              # id, label, feature or unused (not named by the dataset's features)
    kind: str              # numeric, text, boolean
    missing: int
    distinct: int
    top_share: float       # share of the non-missing rows that hold the most frequent value
    constant: bool
    near_constant: bool
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class QuasiIdentifiers:
    columns: tuple[str, ...]
    smallest_group: int | None      # k: the fewest rows sharing one combination of these columns' values
    rows_in_small_groups: int       # rows whose combination fewer than SMALL_GROUP rows share


@dataclass(frozen=True)
class AuditReport:
    dataset: str
    rows: int
    columns: tuple[ColumnReport, ...]
    quasi_identifiers: QuasiIdentifiers
    # rows of the even sample the column statistics and detectors looked at; None: every row
    column_sample_rows: int | None = None
    audited_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def pii_features(self, allowed: frozenset[str] | set[str] = frozenset()) -> list[Finding]:
        """Findings on feature columns the policy does not allow by name: what a job refuses."""
        return [f for c in self.columns if c.role == "feature" and c.name not in allowed for f in c.findings]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def to_text(self) -> str:
        return render_text(self)


def _kind(series: pd.Series, present: list) -> str:
    if series.dtype.kind == "b":
        return "boolean"
    if series.dtype.kind in "iuf":
        return "numeric"
    parsed = pd.to_numeric(pd.Series([str(v).strip() for v in present], dtype=object), errors="coerce")
    return "numeric" if len(present) and parsed.notna().all() else "text"


def _role(column: str, ds: DatasetConfig) -> str:
    if column == ds.id_column:
        return "id"
    if column == ds.label:
        return "label"
    if ds.features is None or column in ds.features:
        return "feature"
    return "unused"


def audit_column(series: pd.Series, role: str, today: dt.date | None = None) -> ColumnReport:
    present = [v for v in series.tolist() if not is_missing(v) and str(v).strip().lower() not in ("nan", "na")]
    texts = [category_text(v) for v in present]
    counts = pd.Series(texts, dtype=object).value_counts() if texts else pd.Series(dtype=int)
    top_share = float(counts.iloc[0] / len(texts)) if texts else 0.0
    # The ID column identifies by design: it only goes to PSI (hashed, blinded), so detectors skip it.
    findings = () if role == "id" else tuple(detect(str(series.name), sample(texts), today))
    return ColumnReport(name=str(series.name), role=role, kind=_kind(series, present), missing=len(series) - len(texts),
                        distinct=int(len(counts)), top_share=round(top_share, 4), constant=len(counts) <= 1,
                        near_constant=len(counts) > 1 and top_share >= NEAR_CONSTANT_SHARE, findings=findings)


def quasi_identifiers(frame: pd.DataFrame, columns: list[str]) -> QuasiIdentifiers:
    """k-anonymity of the demographic-looking columns taken together, on their values as stored."""
    if not columns:
        return QuasiIdentifiers((), None, 0)
    keys = frame[columns].astype(str).apply(lambda col: col.str.strip())
    sizes = keys.groupby(columns, dropna=False).size()
    return QuasiIdentifiers(tuple(columns), int(sizes.min()), int(sizes[sizes < SMALL_GROUP].sum()))


def even_sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """`rows` rows spread evenly over the table, first and last included (deterministic: a report is repeatable)."""
    import numpy as np
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, rows).round().astype(np.int64))]


def audit_frame(frame: pd.DataFrame, ds: DatasetConfig, today: dt.date | None = None,
                max_rows: int | None = None) -> AuditReport:
    """The audit of `frame` (the table as read). With `max_rows` and a longer table, the per-column statistics and
    detectors look at an even sample of `max_rows` rows; the row count and the quasi-identifier k cover all rows."""
    sampled = even_sample(frame, max_rows) if max_rows is not None and len(frame) > max_rows else None
    columns = sampled if sampled is not None else frame
    reports = tuple(audit_column(columns[c], _role(str(c), ds), today) for c in columns.columns)
    demographic = [r.name for r in reports if r.role == "feature" and DEMOGRAPHIC_TOKENS & set(name_tokens(r.name))]
    return AuditReport(dataset=ds.name, rows=len(frame), columns=reports,
                       quasi_identifiers=quasi_identifiers(frame, demographic),
                       column_sample_rows=len(sampled) if sampled is not None else None)


def audit_dataset(ds: DatasetConfig, today: dt.date | None = None) -> AuditReport:
    from vfl.data.readers import read_frame
    return audit_frame(read_frame(ds.path), ds, today)


def even_positions(rows: int, wanted: int) -> np.ndarray:
    """`wanted` row positions spread evenly over `rows` rows, first and last included (a repeatable sample)."""
    return np.unique(np.linspace(0, rows - 1, wanted).round().astype(np.int64))


def audit_stream(ds: DatasetConfig, today: dt.date | None = None, max_rows: int | None = None,
                 chunk_rows: int | None = None) -> AuditReport:
    """The audit a job runs, reading the table in chunks (vfl.data.readers.iter_frames) instead of whole: one pass
    counts the rows (the first column alone), a second keeps an even sample of `max_rows` rows for the column
    statistics and detectors and counts the groups of the demographic columns over every row. Memory: one chunk, the
    sample, and one count per distinct combination of the demographic columns. Up to `max_rows` rows it is
    `audit_frame` of the whole table. `max_rows` None: JOB_AUDIT_MAX_ROWS, fewer for a table of more than
    JOB_AUDIT_MAX_CELLS / JOB_AUDIT_MAX_ROWS columns."""
    from vfl.data.readers import iter_frames, table_columns
    names = table_columns(ds.path)
    if max_rows is None:
        max_rows = max(1000, min(JOB_AUDIT_MAX_ROWS, JOB_AUDIT_MAX_CELLS // max(len(names), 1)))
    roles = {c: _role(c, ds) for c in names}
    demographic = [c for c in names if roles[c] == "feature" and DEMOGRAPHIC_TOKENS & set(name_tokens(c))]
    rows = sum(len(frame) for _, frame in iter_frames(ds.path, chunk_rows, columns=names[:1]))
    positions = even_positions(rows, max_rows) if rows > max_rows else None
    parts, groups = [], collections.Counter()
    for first, frame in iter_frames(ds.path, chunk_rows):
        if positions is None:
            parts.append(frame)
        else:
            at = positions[(positions >= first - 1) & (positions < first - 1 + len(frame))] - (first - 1)
            parts.append(frame.iloc[at])
        if demographic:
            keys = frame[demographic].astype(str).apply(lambda col: col.str.strip())
            groups.update(keys.groupby(demographic, dropna=False).size().to_dict())
    sample = pd.concat(parts, ignore_index=True)
    reports = tuple(audit_column(sample[c], roles[c], today) for c in names)
    quasi = QuasiIdentifiers(tuple(demographic), min(groups.values()),
                             sum(v for v in groups.values() if v < SMALL_GROUP)) if demographic and groups \
        else QuasiIdentifiers((), None, 0)
    return AuditReport(dataset=ds.name, rows=rows, columns=reports, quasi_identifiers=quasi,
                       column_sample_rows=len(sample) if positions is not None else None)


def render_text(report: AuditReport) -> str:
    lines = [f"data audit of dataset {report.dataset!r}: {report.rows} rows, {len(report.columns)} columns "
             f"({report.audited_at})", ""]
    if report.column_sample_rows is not None:
        lines[1:1] = [f"column statistics and personal-data detectors over an even sample of "
                      f"{report.column_sample_rows} rows; the row count and k over all rows"]
    lines.append(f"{'column':<28} {'role':<8} {'kind':<8} {'missing':>8} {'distinct':>9}  notes")
    for c in report.columns:
        notes = ["constant" if c.constant else "", f"near-constant ({c.top_share:.1%} one value)" if c.near_constant
                 else ""] + [f"PII? {f.detector} (by {f.evidence})" for f in c.findings]
        lines.append(f"{c.name[:28]:<28} {c.role:<8} {c.kind:<8} {c.missing:>8} {c.distinct:>9}  "
                     + "; ".join(n for n in notes if n))
    q = report.quasi_identifiers
    lines.append("")
    if q.columns:
        lines.append(f"quasi-identifiers {', '.join(q.columns)}: smallest group k = {q.smallest_group}; "
                     f"{q.rows_in_small_groups} rows in groups under {SMALL_GROUP}")
    else:
        lines.append("quasi-identifiers: no demographic-looking feature column")
    pii = report.pii_features()
    lines.append(f"personal data in feature columns: {len(pii)} finding(s)" if pii
                 else "personal data in feature columns: none found")
    lines.extend(f"  - {f.describe()}" for f in pii)
    return "\n".join(lines)
