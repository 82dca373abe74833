"""The Ray backend: a party's heavy work on its own Ray cluster, with Ray's own tasks, actors and object store.

Two kinds of work, split by whether it needs a secret (docs/scale.md, "What runs where"):

* **Key holders.** Each private key of a job lives in `key_actors` actors of this backend, for the length of the
  job. The first generates the key pair in its own memory and copies p, q to the others by calling them directly
  (an actor-to-actor call); the node process receives n and the public DJN base, never p or q, and no other task
  sees them. Encryption, decryption and re-randomization under the party's own key are calls to these actors.
  Their secret inputs and outputs (the plaintexts: weight shares, gradients, decrypted values) travel in calls of
  at most :func:`secret_bytes_per_call`, below Ray's limit for inlining (``max_direct_call_object_size``,
  100 KiB unless ``RAY_max_direct_call_object_size`` sets it), so they go inside the call itself and never into
  the object store, from which Ray spills to disk.
  The actors are anonymous (no name another job could look up), and are killed when the job's key is closed.
* **Plain tasks.** Everything that needs no secret key: ciphertext x plaintext products and multi-exponentiation,
  re-randomization under a peer's key (with the peer's published base), PSI hashing, blinding and OPRF
  evaluation. The PSI tasks carry the session's 32-byte blinding scalar as an inline argument, like any small
  argument; nothing puts it into the object store.

tests/adversary/test_ray_secrets.py runs a job on Ray and scans Ray's session, log and spill directories and the
object store's memory for the keys and shares, with a planted control in each place.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Sequence

import ray
from gmpy2 import mpz
from phe import paillier

from psi.core.engine import Engine as PsiEngine
from vfl.compute.base import ComputeError
from vfl.compute.config import RAY_AUTO, RAY_LOCAL, ComputeConfig
from vfl.errors import ConfigError
from vfl.he.batch import KeyedEngine
from vfl.he.engine import MIN_PARALLEL_ITEMS, PaillierEngine
from vfl.he.keys import generate_keypair, public_key_from_n
from vfl.he.parallel import run_released, split
from vfl.he.wire import check_ciphertexts, ciphertext_width

log = logging.getLogger("vfl.compute")

#: the most secret bytes (plaintexts in, decrypted values out) one call to a key holder carries by default: below
#: Ray's default inlining limit of 100 KiB, with room for the call's own framing
SECRET_BYTES_PER_CALL = 64 * 1024
#: Ray's setting for that limit (the same environment variable must reach the cluster's nodes and this node)
INLINE_LIMIT_ENV = "RAY_max_direct_call_object_size"
DEFAULT_INLINE_LIMIT = 100 * 1024
#: what a call adds to its payload before Ray compares it with the limit (pickling, the call's framing)
CALL_OVERHEAD_BYTES = 1024


def secret_bytes_per_call() -> int:
    """Secret bytes one key-holder call may carry so that Ray inlines it (from the node's environment)."""
    raw = os.environ.get(INLINE_LIMIT_ENV, "")
    try:
        limit = int(raw) if raw else DEFAULT_INLINE_LIMIT
    except ValueError:
        raise ConfigError(f"{INLINE_LIMIT_ENV}={raw!r} is not a number of bytes") from None
    return min(SECRET_BYTES_PER_CALL, limit - CALL_OVERHEAD_BYTES)
#: default ceiling of key holders per key (each is one process holding the key)
MAX_DEFAULT_KEY_ACTORS = 8


# ------------------------------------------------------------------------------------------ encoding

def pack_ints(values: Sequence, width: int) -> bytes:
    """Fixed-width big-endian concatenation (what crosses a call: compact, and no pickled objects)."""
    return b"".join(int(v).to_bytes(width, "big") for v in values)


def unpack_ints(blob: bytes, width: int) -> list:
    return [mpz(int.from_bytes(blob[i:i + width], "big")) for i in range(0, len(blob), width)]


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id()


# ------------------------------------------------------------------------------------------ worker side

def run_task(fn: Callable, args: tuple) -> tuple[str, Any]:
    """A plain task: one chunk of an engine's work (fn is a module-level task of vfl.he or psi.core)."""
    return _node_id(), run_released(fn, *args)


class KeyHolder:
    """One private key of one job, in this actor's memory only (see the module docstring)."""

    def __init__(self) -> None:
        self._engine: PaillierEngine | None = None

    def generate(self, key_bits: int) -> tuple[int, int, str]:
        """A fresh key pair; returns only the public modulus n and the DJN base h_s (and where this actor runs)."""
        public, private = generate_keypair(key_bits)
        self._engine = PaillierEngine(public, private)
        return int(public.n), int(self._engine.djn_base), _node_id()

    def share_key(self, others: list) -> list[str]:
        """Copy this key to the job's other holders, calling them directly: the node never sees p or q."""
        engine = self._need()
        p, q, hs = int(engine.private_key.p), int(engine.private_key.q), int(engine.djn_base)
        return ray.get([other.adopt.remote(p, q, hs) for other in others])

    def adopt(self, p: int, q: int, hs: int) -> str:
        public = paillier.PaillierPublicKey(p * q)
        self._engine = PaillierEngine(public, paillier.PaillierPrivateKey(public, p, q), djn_base=hs)
        return _node_id()

    def _need(self) -> PaillierEngine:
        if self._engine is None:
            raise RuntimeError("this key holder holds no key (closed, or never given one)")
        return self._engine

    def encrypt(self, plaintexts: bytes) -> bytes:
        engine = self._need()
        width = (engine.key_bits + 7) // 8
        return pack_ints(engine.encrypt_ints(unpack_ints(plaintexts, width)), ciphertext_width(engine.n))

    def decrypt(self, ciphertexts: bytes) -> bytes:
        """Residues in [0, n), checked like any decryption (0 < c < n^2, gcd(c, n) = 1)."""
        engine = self._need()
        cts = unpack_ints(ciphertexts, ciphertext_width(engine.n))
        return pack_ints(engine.decrypt_ints(cts, centered=False), (engine.key_bits + 7) // 8)

    def rerandomize(self, ciphertexts: bytes) -> bytes:
        engine = self._need()
        width = ciphertext_width(engine.n)
        return pack_ints(engine.rerandomize(unpack_ints(ciphertexts, width)), width)

    def forget(self) -> None:
        self._engine = None


# ------------------------------------------------------------------------------------------ node side

class Spread:
    """How many tasks and key-holder calls ran on each Ray node (for the benchmark and the node's log)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tasks: collections.Counter = collections.Counter()
        self.key_calls: collections.Counter = collections.Counter()

    def task(self, node: str) -> None:
        with self._lock:
            self.tasks[node] += 1

    def key_call(self, node: str, count: int = 1) -> None:
        with self._lock:
            self.key_calls[node] += count

    def snapshot(self) -> dict:
        with self._lock:
            return {"tasks": dict(self.tasks), "key_calls": dict(self.key_calls)}


class RayExecutor:
    """vfl.he's executor interface over plain Ray tasks: every chunk is a task, results in order."""

    backend = "ray"

    def __init__(self, compute: "RayCompute"):
        self._compute = compute

    @property
    def workers(self) -> int:
        return self._compute.parallelism

    def map(self, fn: Callable, arg_list: Sequence[tuple]) -> list:
        refs = [self._compute.remote_task.remote(fn, tuple(args)) for args in arg_list]
        out = []
        for node, result in self._compute.get(refs, "a task"):
            self._compute.spread.task(node)
            out.append(result)
        return out

    def close(self) -> None:
        pass


class RayPrivateEngine:
    """The node's view of a key held by key-holder actors: the raw-engine interface KeyedEngine wraps.

    Encryption, decryption and re-randomization are calls to the holders (secret bytes per call bounded, see
    the module docstring); products and sums under the key need no secret and run as plain tasks.
    """

    has_private_key = True

    def __init__(self, compute: "RayCompute", key_bits: int, holders: int):
        self._compute = compute
        self._actors = [compute.key_holder_class.remote() for _ in range(holders)]
        self._closed = False
        n, hs, node = compute.get(self._actors[0].generate.remote(key_bits), "the key holder")
        self._nodes = [node] + list(compute.get(self._actors[0].share_key.remote(self._actors[1:]), "the key holders"))
        self.public_key = public_key_from_n(n)
        self.n = mpz(n)
        self.nsquare = self.n * self.n
        self.key_bits = int(self.n.bit_length())
        self.half_n = self.n // 2
        self.djn_base = int(hs)
        self._plain_width = (self.key_bits + 7) // 8
        self._ct_width = ciphertext_width(self.n)
        self._next = 0
        self._lock = threading.Lock()
        # sums, products and multi-exponentiation under this key: public work, plain tasks
        self._public = PaillierEngine(self.public_key, None, randomness="full", pool_size=0,
                                      executor=compute.executor)
        self.executor = compute.executor

    @property
    def workers(self) -> int:
        return self._compute.parallelism

    def __repr__(self) -> str:
        return f"RayPrivateEngine({self.key_bits}-bit, {len(self._actors)} key holders)"

    # --- calls to the key holders
    def _chunks(self, count: int) -> list[tuple[int, int]]:
        per_call = self._compute.secret_bytes // self._plain_width
        parts = math.ceil(count / per_call)
        if count >= MIN_PARALLEL_ITEMS:
            parts = max(parts, min(len(self._actors), count))
        return split(count, parts)

    def _on_holders(self, method: str, items: list, width_in: int, width_out: int) -> list:
        if self._closed:
            raise ComputeError("this job's key is closed: its key holders are gone")
        if not items:
            return []
        with self._lock:
            start, self._next = self._next, self._next + 1
        calls = []
        for i, (a, b) in enumerate(self._chunks(len(items))):
            k = (start + i) % len(self._actors)
            calls.append((k, getattr(self._actors[k], method).remote(pack_ints(items[a:b], width_in))))
        blobs = self._compute.get([ref for _, ref in calls], "the key holder")
        for k, _ in calls:
            self._compute.spread.key_call(self._nodes[k])
        return [x for blob in blobs for x in unpack_ints(blob, width_out)]

    def encrypt_ints(self, plaintexts: Sequence[int]) -> list:
        n = self.n
        return self._on_holders("encrypt", [mpz(m) % n for m in plaintexts], self._plain_width, self._ct_width)

    def decrypt_ints(self, ciphertexts: Sequence, centered: bool = True) -> list[int]:
        cts = check_ciphertexts(ciphertexts, self.n, "ciphertext")
        out = self._on_holders("decrypt", cts, self._ct_width, self._plain_width)
        if not centered:
            return [int(m) for m in out]
        n, half = self.n, self.half_n
        return [int(m - n) if m > half else int(m) for m in out]

    def rerandomize(self, ciphertexts: Sequence) -> list:
        return self._on_holders("rerandomize", list(ciphertexts), self._ct_width, self._ct_width)

    # --- public work under the key
    def add_plain(self, ciphertexts: Sequence, plaintexts: Sequence[int]) -> list:
        return self._public.add_plain(ciphertexts, plaintexts)

    def add(self, a: Sequence, b: Sequence) -> list:
        return self._public.add(a, b)

    def sub(self, a: Sequence, b: Sequence) -> list:
        return self._public.sub(a, b)

    def negate(self, ciphertexts: Sequence) -> list:
        return self._public.negate(ciphertexts)

    def mul_scalar(self, ciphertexts: Sequence, scalars) -> list:
        return self._public.mul_scalar(ciphertexts, scalars)

    def multiexp(self, bases: Sequence, exponents, algorithm: str | None = None, window: int | None = None) -> list:
        return self._public.multiexp(bases, exponents, algorithm, window)

    def check_ciphertexts(self, ciphertexts: Sequence, what: str = "ciphertext") -> list:
        return check_ciphertexts(ciphertexts, self.n, what)

    def prefill(self, count: int | None = None, timeout: float | None = None) -> bool:
        return True

    def holder_nodes(self) -> list[str]:
        return list(self._nodes)

    def close(self) -> None:
        """End the key: each holder drops it and its process is ended (the key dies with the process)."""
        if self._closed:
            return
        self._closed = True
        actors, self._actors = self._actors, []
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone: nothing left to end
                pass

    def __del__(self) -> None:  # a job that ends without closing its key still ends the holders
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class RayPsiEngine(PsiEngine):
    """psi's compute engine with each chunk as a Ray task; the futures are the ones psi's protocol waits on."""

    def __init__(self, compute: "RayCompute"):
        super().__init__(workers=1)
        self._compute = compute

    @property
    def parallelism(self) -> int:
        return self._compute.parallelism

    def _submit(self, fn, *args) -> Future:
        if self._closed:
            raise ComputeError("the PSI engine of this node is closed")
        out: Future = Future()
        inner = self._compute.remote_task.remote(fn, args).future()

        def relay(f: Future) -> None:
            if out.cancelled():
                return
            try:
                node, result = f.result()
            except Exception as exc:  # noqa: BLE001 - the task's own error, raised where psi reads the result
                out.set_exception(self._compute.translate(exc, "a PSI task"))
                return
            self._compute.spread.task(node)
            out.set_result(result)
        inner.add_done_callback(relay)
        return out

    def warm_up(self) -> list[int]:
        self._compute.get([self._compute.remote_task.remote(time.sleep, (0.0,)) for _ in range(self.parallelism)],
                          "a task")
        return []

    def worker_pids(self) -> list[int]:
        return []

    def peak_rss_bytes(self) -> int:
        from psi.core.engine import peak_rss_bytes
        return peak_rss_bytes()

    def close(self) -> None:
        self._closed = True


# ------------------------------------------------------------------------------------------ the backend

_CONNECTION_LOCK = threading.Lock()
_OWNED_INSTANCE: list = []   # the RayCompute objects sharing a private instance this process started


class RayCompute:
    """A node's Ray backend: one connection per process (Ray's rule), key holders per job, plain tasks."""

    name = "ray"

    def __init__(self, config: ComputeConfig, workers: int, party: str):
        self.config = config
        self.namespace = config.namespace or f"vfl-{party}"
        self.secret_bytes = secret_bytes_per_call()
        if self.secret_bytes < 512:   # a 4096-bit plaintext must fit one call
            raise ConfigError(f"{INLINE_LIMIT_ENV} leaves {self.secret_bytes} bytes per call to a key holder, fewer "
                              "than one plaintext: the secrets would go through the object store; raise it above "
                              f"{512 + CALL_OVERHEAD_BYTES} bytes (Ray's default is {DEFAULT_INLINE_LIMIT})")
        self._owns_instance = False
        self._connect(workers)
        self.spread = Spread()
        # SPREAD: the chunks of one operation are compute-bound and carry their inputs, so they go to different nodes
        # (Ray's default would fill the driver's node first, and reuse its leased workers for the next chunks)
        self.remote_task = ray.remote(scheduling_strategy="SPREAD")(run_task)
        self.key_holder_class = ray.remote(num_cpus=0, max_restarts=0, scheduling_strategy="SPREAD")(KeyHolder)
        self.executor = RayExecutor(self)
        self._psi = RayPsiEngine(self)
        self._cpus = 1
        self._cpus_at = 0.0
        self._refresh()
        self._closed = False
        self.warm_up()

    def warm_up(self) -> None:
        """Have Ray start this driver's task workers now (each imports vfl's engines, seconds on a busy machine), so
        that a job's first batches do not wait for them; Ray keeps idle workers up to the CPUs of each node. Not
        waited for: a cluster that has yet to scale up its workers must not hold the node's start-up."""
        self._warming = [self.remote_task.remote(time.sleep, (0.5,)) for _ in range(self.parallelism)]

    def _connect(self, workers: int) -> None:
        c = self.config
        with _CONNECTION_LOCK:
            if ray.is_initialized():  # this process is already connected (e.g. two nodes' runtimes in one test)
                if _OWNED_INSTANCE:
                    _OWNED_INSTANCE.append(self)
                    self._owns_instance = True
                return
            kwargs: dict = {"namespace": self.namespace, "log_to_driver": False, "configure_logging": False}
            try:
                if c.address == RAY_LOCAL:
                    ray.init(num_cpus=c.num_cpus or workers, include_dashboard=False,
                             object_store_memory=c.object_store_mb * 1024 * 1024, **kwargs)
                    _OWNED_INSTANCE.append(self)
                    self._owns_instance = True
                else:
                    ray.init(address=c.address, **kwargs)
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - Ray's own connection errors, made actionable
                where = "start a private Ray instance" if c.address == RAY_LOCAL else \
                    f"connect to the Ray cluster at {c.address}" if c.address != RAY_AUTO else \
                    "find a Ray cluster on this machine (address: auto)"
                raise ConfigError(f"compute: cannot {where}: {type(exc).__name__}: {exc}") from None

    def _refresh(self) -> None:
        try:
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        except Exception:  # noqa: BLE001 - keep the last figure
            pass
        self._cpus_at = time.monotonic()

    @property
    def parallelism(self) -> int:
        if self.config.parallelism:
            return self.config.parallelism
        if time.monotonic() - self._cpus_at > 30:   # an autoscaling cluster grows: look again now and then
            self._refresh()
        return self._cpus

    @property
    def key_actors(self) -> int:
        return self.config.key_actors or min(self.parallelism, MAX_DEFAULT_KEY_ACTORS)

    # --- errors
    def translate(self, exc: BaseException, what: str) -> BaseException:
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = exc.as_instanceof_cause()
            return cause if not isinstance(cause, ray.exceptions.RayTaskError) else \
                ComputeError(f"compute (Ray): {what} failed: {type(exc.cause).__name__}: {exc.cause}")
        if isinstance(exc, ray.exceptions.RayActorError):
            return ComputeError(f"compute (Ray): {what} is gone (its actor died or its node was lost); the job's key "
                                "went with it, so the job must resume, which sets up fresh keys")
        if isinstance(exc, ray.exceptions.RayError):
            return ComputeError(f"compute (Ray): {what} failed: {type(exc).__name__}")
        return exc

    def get(self, refs, what: str):
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise self.translate(exc, what) from None

    # --- the Compute interface
    def private_key(self, key_bits: int) -> KeyedEngine:
        self._refresh()
        return KeyedEngine(RayPrivateEngine(self, key_bits, self.key_actors))

    def public_key(self, n: int, djn_base: int, djn_slack_bits: int | None = None) -> KeyedEngine:
        return KeyedEngine(PaillierEngine.from_n(n, executor=self.executor, djn_base=djn_base,
                                                 djn_slack_bits=djn_slack_bits))

    def psi_engine(self) -> RayPsiEngine:
        return self._psi

    def nodes(self) -> list[dict]:
        return [{"node_id": n["NodeID"], "address": n.get("NodeManagerAddress"),
                 "cpus": n.get("Resources", {}).get("CPU", 0)} for n in ray.nodes() if n.get("Alive")]

    def describe(self) -> dict:
        spread = self.spread.snapshot()
        return {"backend": self.name, "address": self.config.address, "namespace": self.namespace,
                "nodes": len(self.nodes()), "cpus": self._cpus, "parallelism": self.parallelism,
                "key_actors": self.key_actors,
                # since this node connected: plain tasks and key-holder calls per Ray node id
                "tasks_per_node": spread["tasks"], "key_calls_per_node": spread["key_calls"]}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._psi.close()
        if self._owns_instance:
            with _CONNECTION_LOCK:
                _OWNED_INSTANCE.remove(self)
                if not _OWNED_INSTANCE and ray.is_initialized():
                    ray.shutdown()
