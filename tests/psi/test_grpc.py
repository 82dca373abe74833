"""PSI over gRPC: servers in this process (threads), and `vfl psi` parties as separate processes (with TLS)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from psi import PsiConfig
from psi.transport import run_session

from .conftest import random_ids

VFL = [sys.executable, "-m", "vfl.cli.main"]


# ----------------------------------------------------------------------------- servers in this process
def test_two_and_three_party_over_grpc(psi_server, engine):
    u = random_ids(900, 70)
    a, b, c = u[:500], u[200:700], u[300:900]
    srv = psi_server({"b": b, "c": c})
    r2 = run_session({"b": srv.channel()}, a, PsiConfig(workers=0, chunk_size=64), me="a", engine=engine)
    assert set(r2.ids) == set(a) & set(b)
    passive = srv.servicer.wait_result(r2.session_id, 10)
    assert passive.ids == r2.ids and [b[i] for i in passive.rows] == r2.ids
    r3 = run_session({"b": srv.channel(), "c": srv.channel()}, a, PsiConfig(workers=0, chunk_size=64), me="a",
                     engine=engine)
    assert set(r3.ids) == set(a) & set(b) & set(c)
    for name, ids in (("b", b), ("c", c)):
        res = srv.servicer.wait_result(r3.session_id, 10, party=name)
        assert res.ids == r3.ids and [ids[i] for i in res.rows] == r3.ids
    rc = run_session({"b": srv.channel()}, a, PsiConfig(workers=0, mode="cardinality"), me="a", engine=engine)
    assert rc.size == 300 and rc.ids is None


def test_large_set_streams_in_chunks_below_the_grpc_limit(psi_server, engine):
    """Bulk data travels as chunks; even the largest allowed chunk fits gRPC's default 4 MiB message limit
    (the servers here use gRPC's default limits; the 10M-ID benchmark runs the same way)."""
    from psi.config import MAX_CHUNK
    from psi.protocol.messages import Chunk, Stage
    from psi.transport.codec import encode
    biggest = encode(Chunk("s" * 128, Stage.BLINDED, 2**40, MAX_CHUNK, b"\xff" * 32 * MAX_CHUNK))
    assert biggest.ByteSize() < 4 * 2**20
    with pytest.raises(Exception):
        PsiConfig(chunk_size=MAX_CHUNK + 1)
    u = random_ids(20_000, 71)
    srv = psi_server({"b": u[5000:]})
    # 15,000 x 32 B blinded points = 480 KB per direction; 2,000-point chunks = 64 KB messages
    result = run_session({"b": srv.channel()}, u[:15_000], PsiConfig(workers=0, chunk_size=2000), me="a",
                         engine=engine)
    assert result.size == 10_000


# ----------------------------------------------------------------------------- separate processes: `vfl psi`
def write_inputs(tmp: Path):
    u = random_ids(3000, 72)
    a, b, c = u[:2000], u[1000:3000], u[500:1500] + u[2500:]
    pacsv.write_csv(pa.table({"customer": a, "score": [str(i) for i in range(len(a))]}), tmp / "a.csv")
    pq.write_table(pa.table({"cid": [" " + x.upper() for x in b], "balance": list(range(len(b)))}), tmp / "b.parquet")
    pacsv.write_csv(pa.table({"id": c}), tmp / "c.csv")
    return a, b, c


def serve(tmp: Path, *args: str) -> tuple[subprocess.Popen, int]:
    err = open(tmp / f"serve-{time.monotonic_ns()}.err", "w+")
    proc = subprocess.Popen(VFL + ["psi", "--serve", "127.0.0.1:0", "--quiet", "--workers", "0", *args],
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        err.seek(0)
        m = re.search(r"serving on 127\.0\.0\.1:(\d+)", err.read())
        if m:
            proc.err_file = err
            return proc, int(m.group(1))
        if proc.poll() is not None:
            err.seek(0)
            raise AssertionError(f"server exited: {err.read()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, _ = proc.communicate(timeout=120)
    proc.err_file.seek(0)
    return proc.returncode, out, proc.err_file.read()


def connect(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(VFL + ["psi", "--quiet", "--workers", "0", *args], capture_output=True, text=True,
                          cwd=tmp, timeout=120)


def summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_cli_two_processes_csv_and_parquet(tmp_path):
    a, b, _ = write_inputs(tmp_path)
    server, port = serve(tmp_path, "--ids", "b.parquet", "--column", "cid", "--out", "b_rows.parquet",
                         "--output", "rows", "--lowercase", "--insecure")
    client = connect(tmp_path, "--connect", f"bank=127.0.0.1:{port}", "--ids", "a.csv", "--column", "customer",
                     "--out", "a_ids.csv", "--lowercase", "--insecure", "--name", "clinic")
    code, out, err = finish(server)
    assert client.returncode == 0, client.stderr
    assert code == 0, err
    sa, sb = summary(client.stdout), summary(out)
    assert sa["intersection"] == sb["intersection"] == 1000
    assert sa["session_id"] == sb["session_id"] and sb["party"] == "bank"
    assert sa["set_sizes"] == {"clinic": 2000, "bank": 2000}
    ids_a = pacsv.read_csv(tmp_path / "a_ids.csv", convert_options=pacsv.ConvertOptions(
        column_types={"customer": pa.string()})).to_pydict()
    rows_b = pq.read_table(tmp_path / "b_rows.parquet").to_pydict()
    assert set(ids_a["customer"]) == set(a) & set(b)
    # same order on both sides: the bank's aligned rows hold the same IDs (its original spelling)
    assert [x.strip().lower() for x in rows_b["cid"]] == ids_a["customer"]
    assert [a[r] for r in ids_a["row"]] == ids_a["customer"]
    assert rows_b["balance"] == [b.index(x) for x in ids_a["customer"]]


def test_cli_three_parties_and_cardinality(tmp_path):
    a, b, c = write_inputs(tmp_path)
    s1, p1 = serve(tmp_path, "--ids", "b.parquet", "--column", "cid", "--out", "b.csv", "--lowercase", "--insecure")
    s2, p2 = serve(tmp_path, "--ids", "c.csv", "--column", "id", "--out", "c.csv.out.csv", "--lowercase",
                   "--insecure")
    client = connect(tmp_path, "--connect", f"b=127.0.0.1:{p1}", "--connect", f"c=127.0.0.1:{p2}", "--ids", "a.csv",
                     "--column", "customer", "--out", "a.parquet", "--lowercase", "--insecure")
    assert client.returncode == 0, client.stderr
    for s in (s1, s2):
        code, out, err = finish(s)
        assert code == 0, err
        assert summary(out)["intersection"] == len(set(a) & set(b) & set(c))
    got = pq.read_table(tmp_path / "a.parquet").column("customer").to_pylist()
    assert set(got) == set(a) & set(b) & set(c)
    s3, p3 = serve(tmp_path, "--ids", "c.csv", "--column", "id", "--mode", "cardinality", "--insecure")
    client = connect(tmp_path, "--connect", f"127.0.0.1:{p3}", "--ids", "a.csv", "--column", "customer",
                     "--mode", "cardinality", "--insecure")
    assert client.returncode == 0, client.stderr
    assert summary(client.stdout)["intersection"] == len(set(a) & set(c))
    assert finish(s3)[0] == 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from vfl.transport.certs import create_ca, issue_party_cert
    root = tmp_path_factory.mktemp("pki")
    create_ca(root / "ca")
    return {who: issue_party_cert(root / "ca", who, root / who) for who in ("clinic", "bank", "mallory")}


def tls_args(cert) -> list[str]:
    return ["--cert", str(cert.cert), "--key", str(cert.key), "--ca", str(cert.ca)]


def test_cli_mutual_tls_with_peer_identity_checks(tmp_path, certs):
    a, b, _ = write_inputs(tmp_path)
    server, port = serve(tmp_path, "--ids", "b.parquet", "--column", "cid", "--out", "b.csv", "--lowercase",
                         "--peer-identity", "clinic", *tls_args(certs["bank"]), "--wait", "60")
    # a client the server does not accept: refused with PERMISSION_DENIED, the server keeps waiting
    bad = connect(tmp_path, "--connect", f"127.0.0.1:{port}", "--peer-identity", "bank", "--ids", "a.csv",
                  "--column", "customer", "--out", "x.csv", "--lowercase", *tls_args(certs["mallory"]))
    assert bad.returncode == 1 and "PERMISSION_DENIED" in bad.stderr and "mallory" in bad.stderr
    # the client refuses a server that is not the identity it expects
    wrong = connect(tmp_path, "--connect", f"127.0.0.1:{port}", "--peer-identity", "someone-else", "--ids", "a.csv",
                    "--column", "customer", "--out", "x.csv", "--lowercase", *tls_args(certs["clinic"]))
    assert wrong.returncode == 1 and "UNAVAILABLE" in wrong.stderr
    good = connect(tmp_path, "--connect", f"127.0.0.1:{port}", "--peer-identity", "bank", "--ids", "a.csv",
                   "--column", "customer", "--out", "a_ids.csv", "--lowercase", *tls_args(certs["clinic"]))
    assert good.returncode == 0, good.stderr
    code, out, err = finish(server)
    assert code == 0, err
    assert summary(good.stdout)["intersection"] == summary(out)["intersection"] == 1000


def test_cli_errors_are_one_clear_line(tmp_path):
    write_inputs(tmp_path)
    r = connect(tmp_path, "--connect", "127.0.0.1:1", "--ids", "a.csv", "--column", "nope", "--out", "o.csv",
                "--insecure")
    assert r.returncode == 1 and "no column 'nope'" in r.stderr and "customer" in r.stderr
    r = connect(tmp_path, "--connect", "127.0.0.1:1", "--ids", "a.csv", "--column", "customer", "--out", "o.csv")
    assert r.returncode == 2 and "--insecure" in r.stderr
    pacsv.write_csv(pa.table({"id": ["x-000000000001", "y-000000000002", "x-000000000001"]}), tmp_path / "dup.csv")
    server, port = serve(tmp_path, "--ids", "c.csv", "--column", "id", "--out", "c_out.csv", "--insecure")
    r = connect(tmp_path, "--connect", f"127.0.0.1:{port}", "--ids", "dup.csv", "--column", "id", "--out", "o.csv",
                "--insecure")
    assert r.returncode == 1 and "duplicate ID 'x-000000000001' at rows 0 and 2" in r.stderr
    code, _, err = finish(server)
    assert code == 1 and "x-000000000001" not in err and "its own input is invalid" in err
    assert "Traceback" not in r.stderr + err


def test_cli_three_parties_cardinality(tmp_path):
    """N-party cardinality mode with every party in its own process: everyone learns only the count."""
    a, b, c = write_inputs(tmp_path)
    s1, p1 = serve(tmp_path, "--ids", "b.parquet", "--column", "cid", "--mode", "cardinality", "--lowercase",
                   "--insecure")
    s2, p2 = serve(tmp_path, "--ids", "c.csv", "--column", "id", "--mode", "cardinality", "--lowercase",
                   "--insecure")
    client = connect(tmp_path, "--connect", f"b=127.0.0.1:{p1}", "--connect", f"c=127.0.0.1:{p2}", "--ids", "a.csv",
                     "--column", "customer", "--mode", "cardinality", "--lowercase", "--insecure")
    assert client.returncode == 0, client.stderr
    expected = len(set(a) & set(b) & set(c))
    assert summary(client.stdout)["intersection"] == expected
    for s in (s1, s2):
        code, out, err = finish(s)
        assert code == 0, err
        assert summary(out)["intersection"] == expected
