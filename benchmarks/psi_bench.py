"""PSI benchmark: our ECDH PSI over gRPC on loopback vs openmined-psi 2.0.4, on the same generated IDs.

Every party runs in its own process (``spawn``):

* ours: the passive party serves ``psi.v1.Psi`` on 127.0.0.1, the active party connects; each has its own
  compute pool (``--workers``, default os.cpu_count()). Timed from the active party's first message to the
  later of the two parties' results; pools are started before the clock (a node keeps its pool).
* openmined-psi: a server process and a client process, exchanging serialized protobufs over pipes, run the
  way a deployment would: server setup || client request, then server process, then client intersection.
  Timed from the start of the parallel phase to the client's intersection.

Both sides get the same IDs: the active/client party holds keys [0, n), the passive/server party
[n - overlap*n, 2n - overlap*n), each key rendered as a scrambled 16-hex-digit string, rows shuffled.

The last stdout line is one JSON object: our seconds, the peer's seconds, the ratio peer/ours, and each
party's peak RSS (VmHWM of the party process plus its worker processes).

    python benchmarks/psi_bench.py                      # 1M x 1M, 50% overlap (make bench)
    python benchmarks/psi_bench.py --size 20000         # quick
    python benchmarks/psi_bench.py --size 10000000      # 10M x 10M (openmined skipped unless --peer)
    python benchmarks/psi_bench.py --parties 3 --size 100000   # N-party vs our 2-party (make bench)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def key_range(role: str, n: int, overlap: float) -> tuple[int, int]:
    start = 0 if role in ("active", "client") else n - int(round(overlap * n))
    return start, start + n


def role_keys(role: str, n: int, overlap: float) -> np.ndarray:
    """The keys of a role. N-party passives are named ``passive-j`` (j >= 1): each holds the common block
    [n - overlap*n, n) of the active party's range and a block of its own that no other party holds."""
    if not role.startswith("passive-"):
        lo, hi = key_range(role, n, overlap)
        return np.arange(lo, hi, dtype=np.uint64)
    j = int(role.split("-")[1])
    common = int(round(overlap * n))
    own = n - common
    return np.concatenate([np.arange(n - common, n, dtype=np.uint64),
                           np.arange(n + (j - 1) * own, n + j * own, dtype=np.uint64)])


def _render(keys: np.ndarray) -> np.ndarray:
    """(n, 16) uint8: each key scrambled (a bijection of uint64) and written as 16 lowercase hex digits."""
    with np.errstate(over="ignore"):
        x = keys * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x0123456789ABCDEF)
        x ^= x >> np.uint64(29)
    out = np.empty((len(keys), 16), dtype=np.uint8)
    for i in range(16):
        out[:, 15 - i] = HEX[((x >> np.uint64(4 * i)) & np.uint64(15)).astype(np.intp)]
    return out


def _shuffled_keys(role: str, n: int, overlap: float, seed: int) -> np.ndarray:
    keys = role_keys(role, n, overlap)
    salt = 0 if role in ("active", "client") else 1 if role in ("passive", "server") else 1 + int(role.split("-")[1])
    np.random.default_rng(seed + salt).shuffle(keys)
    return keys


def make_ids_bytes(role: str, n: int, overlap: float, seed: int = 7, block: int = 1 << 20) -> np.ndarray:
    """n IDs as (n, 16) uint8 hex digits, rows shuffled per role; rendered in blocks to keep memory low."""
    keys = _shuffled_keys(role, n, overlap, seed)
    out = np.empty((n, 16), dtype=np.uint8)
    for i in range(0, n, block):
        out[i:i + block] = _render(keys[i:i + block])
    return out


def make_ids_arrow(role: str, n: int, overlap: float):
    """The IDs as a pyarrow string array built directly on the digit buffer (16 + 4 bytes per ID), the way
    a party holds a column read from a file."""
    import pyarrow as pa
    digits = make_ids_bytes(role, n, overlap)
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32 if 16 * n < 2**31 else np.int64)
    kind = pa.string() if offsets.dtype == np.int32 else pa.large_string()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(digits)])


def make_ids_list(role: str, n: int, overlap: float) -> list[str]:
    return [b.decode() for b in make_ids_bytes(role, n, overlap).view("S16").reshape(n).tolist()]


def ids_digest(result, chunk: int = 200_000) -> str:
    h = hashlib.sha256()
    rows = result.rows
    for i in range(0, len(rows), chunk):
        part = result._id_source.gather(rows[i:i + chunk])
        h.update("\n".join(v.decode() if isinstance(v, bytes) else v for v in part).encode())
        h.update(b"\n")
    return h.hexdigest()


def cpu_seconds() -> dict:
    """CPU time of this process and of its (already joined) worker processes."""
    import resource
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"main": round(me.ru_utime + me.ru_stime, 1), "workers": round(kids.ru_utime + kids.ru_stime, 1)}


def busy_cpu_seconds() -> float:
    """CPU seconds all processes on the machine spent busy so far (/proc/stat), to measure contention."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Contention:
    """CPU seconds other processes used on this machine while a measured run was going on."""

    def __enter__(self):
        self.busy0, self.ours0 = busy_cpu_seconds(), children_cpu_seconds()
        return self

    def __exit__(self, *exc):
        busy = busy_cpu_seconds() - self.busy0
        ours = children_cpu_seconds() - self.ours0
        self.others = round(max(0.0, busy - ours), 1)


def mb(x: int) -> float:
    return round(x / 2**20, 1)


# ----------------------------------------------------------------------------- our PSI: one party per process
def ours_passive(conn, n: int, overlap: float, workers: int, role: str = "passive") -> None:
    import grpc
    from concurrent import futures
    from psi.core.engine import Engine, peak_rss_bytes
    from psi.transport import add_psi_service
    ids = make_ids_arrow(role, n, overlap)
    engine = Engine(workers)
    engine.warm_up()
    done = {}

    def on_result(session_id, result):
        done["t_end"] = time.time()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    servicer = add_psi_service(server, lambda hello, peer: ids, engine=engine, on_result=on_result, timeout=600)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    conn.send({"port": port})
    session_id = conn.recv()
    result = servicer.wait_result(session_id, timeout=7200)
    rss = engine.peak_rss_bytes()
    digest = ids_digest(result)
    server.stop(1)
    engine.close()
    conn.send({"t_end": done["t_end"], "size": result.size, "peak_rss": rss, "main_rss": peak_rss_bytes(),
               "digest": digest, "cpu": cpu_seconds()})


def ours_active(conn, n: int, overlap: float, workers: int, chunk: int, ports: dict, session_id: str) -> None:
    import grpc
    from psi import PsiConfig
    from psi.core.engine import Engine, peak_rss_bytes
    from psi.transport import run_session
    ids = make_ids_arrow("active", n, overlap)
    engine = Engine(workers)
    engine.warm_up()
    channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
    for channel in channels.values():
        grpc.channel_ready_future(channel).result(timeout=30)
    conn.send("ready")
    conn.recv()
    t0 = time.time()
    result = run_session(channels, ids, PsiConfig(workers=workers, chunk_size=chunk, timeout=600,
                                                                session_id=session_id), me="active", engine=engine)
    t1 = time.time()
    rss = engine.peak_rss_bytes()
    digest = ids_digest(result)
    engine.close()
    conn.send({"t0": t0, "t_end": t1, "size": result.size, "peak_rss": rss, "main_rss": peak_rss_bytes(),
               "digest": digest, "cpu": cpu_seconds()})


def run_ours(n: int, overlap: float, workers: int, chunk: int, passives: int = 1) -> dict:
    """One session, every party in its own process; ``passives`` >= 2 makes it the N-party protocol."""
    ctx = mp.get_context("spawn")
    roles = ["passive"] if passives == 1 else [f"passive-{j}" for j in range(1, passives + 1)]
    procs, conns, ports = [], {}, {}
    for role in roles:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=ours_passive, args=(child, n, overlap, workers, role), name=f"psi-{role}")
        proc.start()
        procs.append(proc)
        conns[role] = conn
        ports[role] = conn.recv()["port"]
    session_id = f"bench-{os.getpid()}-{int(time.time())}-{passives}"
    a_conn, a_child = ctx.Pipe()
    active = ctx.Process(target=ours_active, args=(a_child, n, overlap, workers, chunk, ports, session_id),
                         name="psi-active")
    active.start()
    assert a_conn.recv() == "ready"
    for conn in conns.values():
        conn.send(session_id)
    a_conn.send("go")
    a = a_conn.recv()
    results = {role: conn.recv() for role, conn in conns.items()}
    for proc in [active] + procs:
        proc.join()
    for role, p in results.items():
        if a["size"] != p["size"] or a["digest"] != p["digest"]:
            raise SystemExit(f"parties disagree: active {a['size']} {a['digest'][:12]}, "
                             f"{role} {p['size']} {p['digest'][:12]}")
    return {"seconds": max([a["t_end"]] + [p["t_end"] for p in results.values()]) - a["t0"], "size": a["size"],
            "peak_rss": {"active": a["peak_rss"], **{r: p["peak_rss"] for r, p in results.items()}},
            "main_rss": {"active": a["main_rss"], **{r: p["main_rss"] for r, p in results.items()}},
            "cpu": {"active": a["cpu"], **{r: p["cpu"] for r, p in results.items()}}}


# ----------------------------------------------------------------------------- openmined-psi: server || client
FPR = 1e-9


def om_server(conn, n: int, overlap: float) -> None:
    import private_set_intersection.python as om
    from psi.core.engine import peak_rss_bytes
    items = make_ids_list("server", n, overlap)
    server = om.server.CreateWithNewKey(True)
    conn.send("ready")
    conn.recv()
    setup = server.CreateSetupMessage(FPR, n, items).SerializeToString()        # phase 1 (|| client request)
    conn.send_bytes(setup)
    request = om.Request()
    request.ParseFromString(conn.recv_bytes())
    response = server.ProcessRequest(request).SerializeToString()               # phase 2
    conn.send_bytes(response)
    conn.send({"peak_rss": peak_rss_bytes()})


def om_client(conn, n: int, overlap: float) -> None:
    import private_set_intersection.python as om
    from psi.core.engine import peak_rss_bytes
    items = make_ids_list("client", n, overlap)
    client = om.client.CreateWithNewKey(True)
    conn.send("ready")
    conn.recv()
    t0 = time.time()
    request = client.CreateRequest(items).SerializeToString()                   # phase 1 (|| server setup)
    conn.send_bytes(request)
    setup = om.ServerSetup()
    setup.ParseFromString(conn.recv_bytes())
    response = om.Response()
    response.ParseFromString(conn.recv_bytes())
    common = client.GetIntersection(setup, response)                            # phase 3
    t1 = time.time()
    conn.send({"t0": t0, "t_end": t1, "size": len(common), "peak_rss": peak_rss_bytes()})


def run_openmined(n: int, overlap: float) -> dict:
    ctx = mp.get_context("spawn")
    s_conn, s_child = ctx.Pipe()
    c_conn, c_child = ctx.Pipe()
    server = ctx.Process(target=om_server, args=(s_child, n, overlap), name="om-server")
    client = ctx.Process(target=om_client, args=(c_child, n, overlap), name="om-client")
    server.start()
    client.start()
    assert s_conn.recv() == "ready" and c_conn.recv() == "ready"
    s_conn.send("go")
    c_conn.send("go")
    # relay: client request -> server; server setup and response -> client
    setup = s_conn.recv_bytes()
    request = c_conn.recv_bytes()
    c_conn.send_bytes(setup)
    s_conn.send_bytes(request)
    c_conn.send_bytes(s_conn.recv_bytes())
    c = c_conn.recv()
    s = s_conn.recv()
    server.join()
    client.join()
    return {"seconds": c["t_end"] - c["t0"], "size": c["size"],
            "peak_rss": {"client": c["peak_rss"], "server": s["peak_rss"]}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="IDs per party (default 1,000,000)")
    ap.add_argument("--overlap", type=float, default=0.5, help="fraction of IDs in common (default 0.5)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="compute processes per party")
    ap.add_argument("--chunk-size", type=int, default=8192, help="points per message")
    ap.add_argument("--parties", type=int, default=2,
                    help="2 (default, vs openmined-psi) or N >= 3: the N-party protocol, every party in its own "
                         "process, against our own 2-party run at the same size (openmined-psi is 2-party only)")
    peer = ap.add_mutually_exclusive_group()
    peer.add_argument("--peer", dest="peer", action="store_true", default=None,
                      help="run openmined-psi too (default: only for sizes <= 2M)")
    peer.add_argument("--no-peer", dest="peer", action="store_false")
    args = ap.parse_args()
    if args.parties >= 3:
        return main_n_party(args)
    n, overlap = args.size, args.overlap
    run_peer = args.peer if args.peer is not None else n <= 2_000_000
    expected = int(round(overlap * n))

    print(f"PSI benchmark: {n:,} x {n:,} IDs, {overlap:.0%} overlap, {args.workers} worker(s) per party, "
          f"{os.cpu_count()} CPUs", flush=True)
    with Contention() as c_ours:
        ours = run_ours(n, overlap, args.workers, args.chunk_size)
    print(f"ours (X25519 + Elligator 2, gRPC loopback, 2 processes + pools): {ours['seconds']:.1f} s, "
          f"|X∩Y| = {ours['size']:,}, peak RSS active {mb(ours['peak_rss']['active'])} MB, "
          f"passive {mb(ours['peak_rss']['passive'])} MB", flush=True)
    if ours["size"] != expected:
        raise SystemExit(f"wrong intersection size {ours['size']}, expected {expected}")
    om = None
    if run_peer:
        with Contention() as c_peer:
            om = run_openmined(n, overlap)
        print(f"openmined-psi 2.0.4 (P-256, GCS fpr {FPR:g}, server || client processes): {om['seconds']:.1f} s, "
              f"|X∩Y| = {om['size']:,}, peak RSS client {mb(om['peak_rss']['client'])} MB, "
              f"server {mb(om['peak_rss']['server'])} MB", flush=True)
    else:
        print("openmined-psi skipped (pass --peer to run it at this size)", flush=True)
    line = {
        "benchmark": "psi", "size": n, "overlap": overlap, "intersection": ours["size"],
        "workers_per_party": args.workers, "chunk_size": args.chunk_size, "cpus": os.cpu_count(),
        "ours_seconds": round(ours["seconds"], 2),
        "peer": "openmined-psi==2.0.4",
        "peer_seconds": round(om["seconds"], 2) if om else None,
        "ratio": round(om["seconds"] / ours["seconds"], 2) if om else None,
        "ours_peak_rss_mb": {k: mb(v) for k, v in ours["peak_rss"].items()},
        "ours_main_process_peak_rss_mb": {k: mb(v) for k, v in ours["main_rss"].items()},
        "peer_peak_rss_mb": {k: mb(v) for k, v in om["peak_rss"].items()} if om else None,
        "ours_cpu_seconds": ours["cpu"],
        # CPU seconds used by *other* processes on the machine during each run (0 = the machine was ours)
        "other_load_cpu_seconds": {"ours": c_ours.others, "peer": c_peer.others if om else None},
    }
    print(json.dumps(line), flush=True)
    return 0


def main_n_party(args) -> int:
    """N-party session vs. our 2-party session on the same active IDs, side by side in one run."""
    n, overlap, m = args.size, args.overlap, args.parties - 1
    expected = int(round(overlap * n))
    print(f"N-party PSI benchmark: {args.parties} parties x {n:,} IDs, {overlap:.0%} of the active party's IDs "
          f"common to all, {args.workers} worker(s) per party, {os.cpu_count()} CPUs", flush=True)
    with Contention() as c_multi:
        multi = run_ours(n, overlap, args.workers, args.chunk_size, passives=m)
    print(f"ours, {args.parties}-party (OPRF + OKVS + zero-sharing): {multi['seconds']:.1f} s, "
          f"|I| = {multi['size']:,}", flush=True)
    with Contention() as c_two:
        two = run_ours(n, overlap, args.workers, args.chunk_size)
    print(f"ours, 2-party: {two['seconds']:.1f} s, |X∩Y| = {two['size']:,}", flush=True)
    if multi["size"] != expected or two["size"] != expected:
        raise SystemExit(f"wrong intersection size {multi['size']} / {two['size']}, expected {expected}")
    line = {
        "benchmark": "psi-n-party", "parties": args.parties, "size": n, "overlap": overlap,
        "intersection": multi["size"], "workers_per_party": args.workers, "cpus": os.cpu_count(),
        "ours_seconds": round(multi["seconds"], 2),
        "peer": "ours, 2-party (openmined-psi has no N-party mode)",
        "peer_seconds": round(two["seconds"], 2),
        "ratio": round(multi["seconds"] / two["seconds"], 2),
        "ours_peak_rss_mb": {k: mb(v) for k, v in multi["peak_rss"].items()},
        "ours_cpu_seconds": multi["cpu"],
        "other_load_cpu_seconds": {"ours": c_multi.others, "peer": c_two.others},
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
