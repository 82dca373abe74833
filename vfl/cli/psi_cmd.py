"""`vfl psi`: run one party's side of a private set intersection session.

    # passive party: serve one session
    vfl psi --serve 0.0.0.0:50070 --ids bank.csv --column customer_id --out aligned.csv \\
            --cert tls.crt --key tls.key --ca ca.crt --peer-identity hospital-a
    # active party: connect (repeat --connect for N parties)
    vfl psi --connect bank-b=bank-b.example:50070 --ids patients.parquet --column patient_id --out aligned.parquet \\
            --cert tls.crt --key tls.key --ca ca.crt --peer-identity bank-b

The ID column is read as text (CSV) or cast to text (Parquet); the output holds the common IDs in the order
every party agrees on (``--output ids``: canonical ID and input row) or this party's full input rows in that
order (``--output rows``). The last stdout line is a JSON summary (with ``--json``, the only line).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import sys
import threading
import time
from pathlib import Path

from vfl.cli.common import UsageError, add_json_options, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("psi", help="private set intersection: one party's side of a session",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--serve", metavar="HOST:PORT", help="serve one session as a passive party (port 0: any)")
    role.add_argument("--connect", metavar="[NAME=]HOST:PORT", action="append",
                      help="connect to a passive party as the active party (repeat for N-party PSI)")
    p.add_argument("--ids", required=True, metavar="FILE", help="ID file: .csv, .csv.gz, .tsv, .parquet or .pq")
    p.add_argument("--column", required=True, help="the ID column")
    p.add_argument("--out", metavar="FILE", help="output file (.csv or .parquet); required in intersection mode")
    p.add_argument("--output", choices=("ids", "rows"), default="ids",
                   help="ids: the common IDs (canonical) and input row; rows: this party's aligned input rows")
    p.add_argument("--name", help="this party's name in the session (default: 'active', or the name the "
                                  "active party gives a serving party)")
    p.add_argument("--mode", choices=("intersection", "cardinality"), default="intersection",
                   help="cardinality: learn only the intersection size (default: intersection)")
    p.add_argument("--no-strip", dest="strip", action="store_false", help="do not strip surrounding whitespace")
    p.add_argument("--lowercase", action="store_true", help="compare IDs case-insensitively (lowercase them)")
    p.add_argument("--session-id", help="session id (active party; default: random)")
    p.add_argument("--chunk-size", type=int, default=8192, help="points per message (default 8192)")
    p.add_argument("--workers", type=int, default=None, help="compute processes (default: CPU count; 0: none)")
    p.add_argument("--timeout", type=float, default=300.0, help="abandon after this many seconds without progress")
    p.add_argument("--wait", type=float, default=0.0,
                   help="serving: give up if no session finishes within this many seconds (0: wait forever)")
    tls = p.add_argument_group("transport security (mutual TLS, or --insecure for tests)")
    tls.add_argument("--cert", help="this party's certificate (PEM)")
    tls.add_argument("--key", help="this party's private key (PEM)")
    tls.add_argument("--ca", help="CA bundle that signs the peers' certificates (PEM)")
    tls.add_argument("--peer-identity", action="append", default=[], metavar="ID",
                     help="the identity (certificate DNS name) the peer must present; serving: the allowed "
                          "client; connecting: one per --connect, in order")
    tls.add_argument("--insecure", action="store_true", help="plaintext gRPC without authentication (tests only)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_json_options(p, "the session summary")
    p.set_defaults(func=cmd_psi)


# ----------------------------------------------------------------------------- files
def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise _error(f"{path}: unsupported file type (use .csv, .csv.gz, .tsv, .parquet or .pq)")


def _error(message: str):
    from vfl.errors import DataError
    return DataError(message)


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh, delimiter=delimiter), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(f"{path}: cannot read: {exc}") from None


def _read_csv(path: Path, columns: list[str] | None):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    header = _csv_header(path)
    wanted = header if columns is None else columns
    for c in wanted:
        if c not in header:
            raise _error(f"{path}: no column {c!r} (columns: {', '.join(header) or 'none'})")
    delimiter = "\t" if path.name.lower().endswith(".tsv") else ","
    try:
        return pacsv.read_csv(
            path, parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError) as exc:
        raise _error(f"{path}: cannot parse CSV: {exc}") from None


def _read_parquet(path: Path, columns: list[str] | None):
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise _error(f"{path}: cannot read Parquet: {exc}") from None
    for c in columns or []:
        if c not in names:
            raise _error(f"{path}: no column {c!r} (columns: {', '.join(names)})")
    return pq.read_table(path, columns=columns)


def read_id_column(path: Path, column: str):
    """The ID column as a pyarrow string array (Parquet integers are cast to text; nulls are reported)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if not path.is_file():
        raise _error(f"{path}: file not found")
    table = _read_parquet(path, [column]) if _kind(path) == "parquet" else _read_csv(path, [column])
    col = table.column(column).combine_chunks()
    if col.null_count:
        first = pc.index(pc.is_null(col), True).as_py()
        raise _error(f"{path}: column {column!r} has a missing ID at row {first} (rows count from 0)")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if pa.types.is_integer(col.type) or pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            col = col.cast(pa.string())
        else:
            raise _error(f"{path}: column {column!r} has type {col.type}; IDs must be text or integers")
    return col


def write_output(path: Path, table) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.name.lower().endswith((".parquet", ".pq")):
        pq.write_table(table, tmp)
    else:
        pacsv.write_csv(table, tmp)
    tmp.replace(path)


def aligned_table(args, result):
    import pyarrow as pa
    rows = pa.array(result.rows, type=pa.int64())
    if args.output == "ids":
        return pa.table({args.column: pa.array(result.ids, type=pa.string()), "row": rows})
    path = Path(args.ids)
    table = _read_parquet(path, None) if _kind(path) == "parquet" else _read_csv(path, None)
    return table.take(rows)


# ----------------------------------------------------------------------------- progress
class Bars:
    """tqdm bars per stage (thread-safe: the protocol reports from its own thread)."""

    def __init__(self, enabled: bool, prefix: str = ""):
        self.enabled = enabled
        self.prefix = prefix
        self.bars: dict = {}
        self.lock = threading.Lock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        with self.lock:
            bar = self.bars.get(stage)
            if bar is None:
                bar = self.bars[stage] = tqdm(total=total, desc=f"{self.prefix}{stage}", unit="id",
                                              unit_scale=True, file=sys.stderr, leave=True, dynamic_ncols=True,
                                              position=len(self.bars), mininterval=0.5)
            bar.update(max(0, done - bar.n))

    def close(self) -> None:
        with self.lock:
            for bar in self.bars.values():
                bar.close()
            self.bars.clear()


# ----------------------------------------------------------------------------- the command
def _credentials(args):
    given = [x for x in (args.cert, args.key, args.ca) if x]
    if args.insecure:
        if given:
            raise _usage("--insecure cannot be combined with --cert/--key/--ca")
        return None
    if len(given) != 3:
        raise _usage("give --cert, --key and --ca (mutual TLS), or --insecure for a plaintext test session")
    return Path(args.cert), Path(args.key), Path(args.ca)


def _config(message: str):
    from vfl.errors import ConfigError
    return ConfigError(message)


def _usage(message: str) -> UsageError:
    return UsageError(message)


def _summary(args, result, seconds: float) -> dict:
    return {"session_id": result.session_id, "party": result.party, "mode": result.mode.value,
            "intersection": result.size, "set_sizes": result.set_sizes, "out": args.out, "output": args.output,
            "seconds": round(seconds, 2)}


def _finish(args, result, seconds: float) -> int:
    from psi import Mode
    if result.mode == Mode.INTERSECTION and args.out:
        write_output(Path(args.out), aligned_table(args, result))
    print(emit_json(args, _summary(args, result, seconds), indent=None), flush=True)
    return 0


def cmd_psi(args: argparse.Namespace) -> int:
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from psi import PsiConfig
    if args.mode == "intersection" and not args.out:
        raise _usage("--out is required in intersection mode (where to write the aligned IDs or rows)")
    if args.out and not args.out.lower().endswith((".csv", ".parquet", ".pq")):
        raise _usage(f"--out {args.out}: write .csv or .parquet")
    creds = _credentials(args)
    ids = read_id_column(Path(args.ids), args.column)
    config = PsiConfig(strip=args.strip, lowercase=args.lowercase, mode=args.mode, chunk_size=args.chunk_size,
                       workers=args.workers, timeout=args.timeout, session_id=args.session_id)
    if args.serve:
        return _serve(args, config, creds, ids)
    return _connect(args, config, creds, ids)


def _connect(args, config, creds, ids) -> int:
    from psi.transport import run_session
    from vfl.transport.tls import channel_credentials, open_channel
    targets = []
    for i, spec in enumerate(args.connect):
        name, _, address = spec.rpartition("=")
        identity = args.peer_identity[i] if i < len(args.peer_identity) else None
        if args.peer_identity and len(args.peer_identity) != len(args.connect):
            raise _usage(f"give one --peer-identity per --connect ({len(args.connect)}), got {len(args.peer_identity)}")
        name = name or identity or ("passive" if len(args.connect) == 1 else f"passive-{i + 1}")
        targets.append((name, address, identity))
    if len({t[0] for t in targets}) != len(targets):
        raise _usage(f"peer names must be distinct: {[t[0] for t in targets]} (use NAME=HOST:PORT)")
    credentials = channel_credentials(*creds) if creds else None
    channels = {name: open_channel(address, credentials, identity) for name, address, identity in targets}
    bars = Bars(not args.quiet)
    t0 = time.time()
    try:
        result = run_session(channels, ids, config, me=args.name or "active", progress=bars)
    finally:
        bars.close()
        for ch in channels.values():
            ch.close()
    return _finish(args, result, time.time() - t0)


def _serve(args, config, creds, ids) -> int:
    from concurrent import futures

    import grpc
    from psi.errors import OutOfOrder, PermissionDenied
    from psi.transport import add_psi_service
    from vfl.transport.guard import InternalErrorGuard
    from vfl.transport.tls import server_credentials, server_options

    allowed = args.peer_identity
    if len(allowed) > 1:
        raise _usage("serving accepts one --peer-identity (the active party allowed to connect)")
    outcome: dict = {}
    claim_lock = threading.Lock()
    finished = threading.Event()
    bars = Bars(not args.quiet)

    def id_provider(hello, peer):
        if allowed and allowed[0] not in peer.names:
            raise PermissionDenied(f"session {hello.session_id}: client {', '.join(peer.names) or 'without a certificate'}"
                                   f" is not the allowed peer {allowed[0]!r}")
        if args.name and hello.recipient != args.name:
            raise PermissionDenied(f"session {hello.session_id}: addressed to {hello.recipient!r}, this party is "
                                   f"{args.name!r}")
        wanted = {"mode": config.mode.value, "strip": config.strip, "lowercase": config.lowercase}
        got = {"mode": hello.mode.value, "strip": hello.strip, "lowercase": hello.lowercase}
        for key in wanted:
            if wanted[key] != got[key]:
                raise PermissionDenied(f"session {hello.session_id}: the active party asks for {key}={got[key]}, "
                                       f"this party was started with {key}={wanted[key]}")
        with claim_lock:  # "serve one session": a second accepted session would be a second look at our IDs
            if "session" in outcome:
                raise OutOfOrder(f"session {hello.session_id}: this party serves one session and "
                                 f"{outcome['session']} already claimed it")
            outcome["session"] = hello.session_id
        outcome["t0"] = time.time()
        return ids

    def on_result(session_id, result):
        outcome["result"] = result
        finished.set()

    def on_error(session_id, exc):
        # a refused caller, or a session beyond the one this party serves: keep serving the right one
        if isinstance(exc, PermissionDenied) or session_id != outcome.get("session"):
            print(f"vfl psi: refused session {session_id}: {exc}", file=sys.stderr, flush=True)
            return
        outcome["error"] = exc
        finished.set()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=server_options(),
                         interceptors=[InternalErrorGuard(args.name or "the serving party")])
    servicer = add_psi_service(server, id_provider, on_result=on_result, on_error=on_error, workers=config.workers,
                               timeout=config.timeout, progress=lambda hello: bars)
    try:
        if creds:
            port = server.add_secure_port(args.serve, server_credentials(*creds))
        else:
            port = server.add_insecure_port(args.serve)
    except RuntimeError as exc:
        raise _config(f"--serve {args.serve}: cannot listen: {exc}") from None
    server.start()
    host = args.serve.rsplit(":", 1)[0]
    print(f"vfl psi: serving on {host}:{port}", file=sys.stderr, flush=True)
    try:
        if not finished.wait(args.wait or None):
            raise _config(f"no PSI session finished within {args.wait:g} s")
    finally:
        bars.close()
        server.stop(grace=2)
        servicer.close()
    if "error" in outcome:
        raise outcome["error"]
    return _finish(args, outcome["result"], time.time() - outcome.get("t0", time.time()))
