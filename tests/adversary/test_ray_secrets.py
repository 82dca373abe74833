"""Secrets stay inside the key holders' memory: a job on Ray leaves no key or share in Ray's files or object store.

The adversary here is whoever can read what a Ray cluster keeps outside its workers' memory: the session
directory (logs of every worker, raylet and GCS, events), the directory objects are spilled to, and the shared
memory of the object store (read through the raylet's mappings, as root on the node can). It gets the whole
session after a training job in which both parties ran on Ray (vfl/compute/ray_cluster.py), and looks for:

* each party's Paillier private key: p, q and what is derived from them (tests/deploy/keyscan.py's needles:
  squares, lambda, phi, mu, phe's CRT constants, in decimal, hex, base64 and both byte orders);
* every value of each party's share of the interactive weight that went to its key holders to be encrypted,
  and the packed plaintexts they went in (decimal, both byte orders, two's complement);
* each party's PSI blinding scalar.

The instance runs with Ray's inline limit lowered to 8 KiB (RAY_max_direct_call_object_size), so the job's
public traffic (ciphertexts, activation exponents, PSI points) goes through the object store and is there to be
read, while the key holders' calls must still keep every secret inside the call. A planted control then puts a
real key into a worker's log, into the object store and into a spilled object, and the same scan finds each.
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.keyscan import needles as key_needles
from tests.job.conftest import breast_tables, job_spec
from tests.job.local import run_local_job
from tests.ray_support import session_dir, start_local_ray, stop_local_ray
from vfl.node.config import parse_node_config

INLINE_LIMIT = 8192


# ------------------------------------------------------------------------------------------ the scanner

def _int_forms(value: int, label: str) -> dict[bytes, str]:
    """A big integer as it may sit in a file or in memory: decimal, hex, big- and little-endian magnitude, and the
    little-endian two's complement pickle writes."""
    magnitude = abs(int(value))
    size = (magnitude.bit_length() + 7) // 8
    forms = {str(int(value)).encode(): f"{label} decimal",
             format(magnitude, "x").encode(): f"{label} hex", format(magnitude, "X").encode(): f"{label} HEX",
             magnitude.to_bytes(size, "big"): f"{label} big-endian", magnitude.to_bytes(size, "little"): f"{label} little-endian",
             int(value).to_bytes(size + 1, "little", signed=True).rstrip(b"\xff" if value < 0 else b"\0"):
                 f"{label} two's complement"}
    return {k: v for k, v in forms.items() if len(k) >= 9}


def share_needles(values, label: str) -> dict[bytes, str]:
    out: dict[bytes, str] = {}
    for v in values:
        if abs(int(v)) >= 1 << 64:   # smaller numbers occur by chance; the masked shares are ~2^90
            out.update(_int_forms(int(v), label))
    return out


class Needles:
    """Many byte strings found in one pass: 8-byte prefixes looked up in a sorted array at every offset.

    A needle's leading 0x00 and 0xff bytes are left out (a packed plaintext's low slots can be zero, and zeroed
    memory would match them everywhere); what remains is still far too long to occur by chance.
    """

    def __init__(self, wanted: dict[bytes, str]):
        self.by_prefix: dict[int, list[tuple[bytes, str]]] = defaultdict(list)
        for needle, label in wanted.items():
            needle = needle.lstrip(b"\0\xff")
            if len(needle) < 9:
                continue
            self.by_prefix[int(np.frombuffer(needle[:8], "<u8")[0])].append((needle, label))
        self.prefixes = np.array(sorted(self.by_prefix), dtype="<u8")

    def find(self, data: bytes) -> set[str]:
        found: set[str] = set()
        for shift in range(8):
            count = (len(data) - shift) // 8
            if count <= 0:
                continue
            words = np.frombuffer(data, dtype="<u8", count=count, offset=shift)
            idx = np.minimum(np.searchsorted(self.prefixes, words), len(self.prefixes) - 1)
            for h in np.nonzero(self.prefixes[idx] == words)[0]:
                pos = shift + 8 * int(h)
                for needle, label in self.by_prefix[int(words[h])]:
                    if data.startswith(needle, pos):
                        found.add(label)
        return found


def object_store_memory() -> bytes:
    """The object store's shared memory, read through the raylet's mappings of /dev/shm/plasma*."""
    import ray
    pid = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if "/plasma" in line:
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            regions.append((start, end))
    out = bytearray()
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for start, end in regions:
            mem.seek(start)
            out += mem.read(end - start)
    return bytes(out)


def scan(needles: Needles) -> dict:
    """Every file under the session directory (logs, events, spilled objects, ...) and the object store."""
    findings: list[str] = []
    files = nbytes = spilled = 0
    for path in sorted(session_dir().rglob("*")):
        if not path.is_file() or path.is_symlink() or path.is_socket():
            continue
        data = path.read_bytes()
        files, nbytes = files + 1, nbytes + len(data)
        spilled += "spilled" in str(path)
        findings += [f"{path.relative_to(session_dir())}: {label}" for label in sorted(needles.find(data))]
    store = object_store_memory()
    findings += [f"object store: {label}" for label in sorted(needles.find(store))]
    return {"files": files, "bytes": nbytes, "spilled_files": spilled, "store_bytes": len(store),
            "store_nonzero": int(np.count_nonzero(np.frombuffer(store, np.uint8))), "findings": findings}


# ------------------------------------------------------------------------------------------ the job

@pytest.fixture(scope="module")
def ray_job(tmp_path_factory):
    """Both parties on one Ray instance, a training job, and what the test knows of each party's secrets."""
    from psi.core import curve25519
    from vfl.compute import ray_cluster
    from vfl.he.packing import pack_row_at_group
    from vfl.protocol import interactive

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_max_direct_call_object_size", str(INLINE_LIMIT))
    _, temp_dir = start_local_ray()
    keys: list[tuple[int, int]] = []
    shares: list[int] = []
    plaintexts: list[int] = []
    scalars: list[bytes] = []

    real_close = ray_cluster.RayPrivateEngine.close

    def close_and_learn(engine):   # the test (not an adversary) asks a live holder for its key, to know what to seek
        if not engine._closed and engine._actors:
            import ray
            p, q = ray.get(engine._actors[0].__ray_call__.remote(
                lambda holder: (int(holder._engine.private_key.p), int(holder._engine.private_key.q))))
            keys.append((p, q))
        real_close(engine)
    mp.setattr(ray_cluster.RayPrivateEngine, "close", close_and_learn)

    real_weight_bases = interactive.weight_bases

    def weight_bases(ops, weights, slot):   # the share rows each party sends its key holders to be encrypted
        shares.extend(int(v) for v in np.asarray(weights).reshape(-1))
        plaintexts.extend(pack_row_at_group(row, t, slot) for row in weights for t in range(slot.groups))
        return real_weight_bases(ops, weights, slot)
    mp.setattr(interactive, "weight_bases", weight_bases)

    real_scalar = curve25519.new_scalar
    mp.setattr(curve25519, "new_scalar", lambda: scalars.append(real_scalar()) or scalars[-1])

    tmp = tmp_path_factory.mktemp("ray-job")
    guest, host = breast_tables()
    configs = {}
    for name, table, label in (("guest", guest, "y"), ("host", host, None)):
        home = tmp / name
        (home / "data").mkdir(parents=True)
        table.to_csv(home / "data" / "table.csv", index=False)
        dataset = {"path": "table.csv", "id": "id", **({"label": label} if label else {})}
        configs[name] = parse_node_config({"party": name, "role": "active" if label else "passive", "insecure": True,
                                           "datasets": {"table": dataset}, "policy": {"min_key_bits": 1024},
                                           "compute": {"backend": "ray", "address": "auto"}}, home)
    try:
        # no label defense: the scan does not depend on it, and the default's OS-random noise on 2 epochs of this small
        # table once took the test AUC to 0.78, under the "a real job ran" check below
        result = run_local_job(job_spec("on-ray", train__epochs=2, privacy__defense="none"), configs)
        yield {"result": result, "keys": keys, "shares": shares, "plaintexts": plaintexts, "scalars": scalars}
    finally:
        mp.undo()
        stop_local_ray(temp_dir)


def secret_needles(job: dict) -> Needles:
    wanted: dict[bytes, str] = {}
    for i, (p, q) in enumerate(job["keys"]):
        for label, needle in key_needles(p, q).items():
            if len(needle) >= 9 and "JSON" not in label:
                wanted[needle] = f"key {i}: {label}"
                if "hex" in label:
                    wanted[needle.upper()] = f"key {i}: {label} (upper case)"
    wanted.update(share_needles(job["shares"], "weight share"))
    wanted.update(share_needles(job["plaintexts"], "packed share plaintext"))
    for i, scalar in enumerate(job["scalars"]):
        wanted[scalar] = f"PSI scalar {i}"
        wanted[scalar.hex().encode()] = f"PSI scalar {i} hex"
    return Needles(wanted)


def test_a_job_on_ray_leaves_no_key_or_share_in_ray_s_files_or_object_store(ray_job):
    result = ray_job["result"]
    assert result["test"]["auc"] > 0.9, result["test"]   # a real job ran, on Ray
    compute = result["compute"]
    assert compute["backend"] == "ray" and sum(compute["tasks_per_node"].values()) > 50
    assert sum(compute["key_calls_per_node"].values()) > 20
    # what the test knows: both parties' keys (one per party and job), their shares, both PSI scalars
    assert len(ray_job["keys"]) == 2 and len(ray_job["scalars"]) == 2
    assert len(share_needles(ray_job["shares"], "s")) > 100
    report = scan(secret_needles(ray_job))
    # the scan read the session (logs of the GCS, the raylet and every worker) and an object store the job used
    assert report["files"] >= 10 and report["bytes"] > 50_000, report
    assert report["store_bytes"] >= 75 * 2**20 and report["store_nonzero"] > 100_000, report
    assert report["findings"] == [], report


def test_planted_control_the_scan_finds_a_key_in_a_log_the_object_store_and_a_spill(ray_job):
    """The same scan, after a careless task logs a key, puts one into the object store and one gets spilled."""
    import ray
    p, q = ray_job["keys"][0]
    share = next(v for v in ray_job["shares"] if abs(v) >= 1 << 64)

    @ray.remote
    def careless(p_value: int, share_value: int) -> None:
        print(f"debug: p={p_value}")                                   # the worker's .out log
        logging.getLogger("careless").warning("share %d", share_value)   # the worker's .err log

    ray.get(careless.remote(p, share))
    spilled = ray.put(p.to_bytes(64, "little") + os.urandom(40 * 2**20))
    fill = [ray.put(os.urandom(40 * 2**20)) for _ in range(3)]       # more than the 96 MiB store: spilling
    in_store = ray.put({"q": q, "padding": os.urandom(200_000)})      # above the inline limit: the object store
    report = scan(secret_needles(ray_job))
    found = " | ".join(report["findings"])
    assert any(f.startswith("logs/") and "key 0: p decimal" in f for f in report["findings"]), found
    assert any(f.startswith("logs/") and "weight share decimal" in f for f in report["findings"]), found
    assert any(f.startswith("object store") and "key 0: q" in f for f in report["findings"]), found
    assert report["spilled_files"] >= 1, report
    assert any("spilled" in f.split(": ", 1)[0] and "key 0: p little-endian" in f
               for f in report["findings"]), found
    del in_store, spilled, fill
