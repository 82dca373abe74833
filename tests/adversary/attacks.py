"""The adversaries: each plays one role with only its `RoleView` and tries to rebuild what it must not learn.

They know the code (Kerckhoffs): they call the project's own fixed-point, packing and update functions, and
they try every way of drawing a "secret" from material they hold that the code has used or could plausibly
use: the job spec's seeds, party names, their own node config (a node-local secret seed included), with the
derivations the code uses and small offsets of them. A guess is only useful to an adversary that can tell
it is right; these adversaries can, because the protocol's values are fixed-point integers: with the true
weight, solving z = H W for H (or D W^T for D) gives integers, and with a wrong one it does not.
"""
from __future__ import annotations

import hashlib
import zlib
from typing import Iterator

import numpy as np
import torch

from tests.adversary.roles import RoleView
from vfl.protocol.messages import decode_int_matrix
from vfl.job.spec import MlpSpec, parse_job_spec
from vfl.models.mlp import build_mlp, init_module
from vfl.protocol import interactive as proto
from vfl.he.packing import unpack_rows

OFFSETS = range(-2, 11)
FEATURE_DIMS = range(1, 33)   # the tables of these tests have at most 20 columns per party
DRAWS_PER_SEED = 4
TORCH_SEEDS = 2**63           # torch seeds are 64-bit signed: larger candidates are reduced


# ------------------------------------------------------------------------------------------ seed guessing

def _crc_combined(seed: int, name: str) -> int:
    """The per-party seed the code derived from the public job seed before the fix (vfl.job.passive.party_seed)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def _hashed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big")


def held_integers(view: RoleView) -> set[int]:
    """Every integer seed-like value this role holds: the spec's seeds, its own node config's integers, and
    numbers made of the job's public material (the job id, both Paillier moduli)."""
    spec = view.spec
    values = {0, int(spec.get("train", {}).get("seed", 0)), int(spec.get("split", {}).get("seed", 0))}
    values |= {v for v in view.config.values() if isinstance(v, int) and not isinstance(v, bool)}
    job_id = str(spec.get("job_id", ""))
    values |= {zlib.crc32(job_id.encode()), int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big")}
    for call in view.calls:
        if call.method == "Setup":
            for n in (call.request.active_public_key, call.reply.passive_public_key):
                values |= {int.from_bytes(n, "big") % 2**32, int.from_bytes(n, "big") % 2**63}
    return values


def seed_candidates(view: RoleView, target: str) -> list[int]:
    """Seeds the target party's draws could come from, if they came from anything this role holds."""
    from vfl.api import node_secret_seed
    names = {target, view.party}
    out: set[int] = set()
    for base in held_integers(view):
        derived = {base} | {_crc_combined(base, n) for n in names} | {_hashed(base, n) for n in names}
        out |= {d + k for d in derived for k in OFFSETS if d + k >= 0}
        out.add(node_secret_seed(base, target))   # a federation whose master were a value this role holds
    return sorted(out)


def private_streams(view: RoleView, target: str) -> list:
    """The node's own derivation (vfl.job.private_random), fed with every seed-like value this role holds,
    its own node-local secret seed included (what the adversary gets if nodes shared a secret seed), and
    with the node seed a federation would derive from each of them."""
    from vfl.api import node_secret_seed
    from vfl.job.private_random import PrivateRandom
    values = sorted(v for v in held_integers(view) if v >= 0)
    return [PrivateRandom(target, v) for v in values] + [PrivateRandom(target, node_secret_seed(v, target))
                                                         for v in values]


def _half_purposes(view: RoleView) -> list[str]:
    names = list(view.spec.get("parties", {}))
    return ["interactive-half"] + [f"interactive-half:{name}" for name in names]


def job_spec(view: RoleView):
    return parse_job_spec(view.spec)


def init_std(view: RoleView) -> float:
    return job_spec(view).interactive_init_std


def weight_half_guesses(view: RoleView, target: str, layout) -> Iterator[np.ndarray]:
    """The target's half of the initial interactive weight (fixed point 2^f_s): the first few draws of a
    generator seeded by each candidate (a party with several links may draw one half per link from it)."""
    std = init_std(view)
    for seed in seed_candidates(view, target):
        rng = np.random.default_rng(seed)
        for _ in range(DRAWS_PER_SEED):
            yield proto.gaussian_half((layout.d, layout.m), std, layout, rng)
    for stream in private_streams(view, target):
        for purpose in _half_purposes(view):
            yield proto.gaussian_half((layout.d, layout.m), std, layout, stream.numpy(purpose))


def bottom_guesses(view: RoleView, target: str, dims) -> Iterator[dict[str, torch.Tensor]]:
    """Initial parameters of the target's default-MLP bottom model, per candidate seed and input width."""
    spec = job_spec(view)
    bottom = spec.party(target).bottom
    seeds = seed_candidates(view, target) + [s.seed("bottom") for s in private_streams(view, target)]
    for dim in dims:
        # init_module overwrites every parameter of the default MLP, so one module per width serves every seed
        module = build_mlp(dim, bottom.hidden, bottom.out, bottom.activation, bottom.dropout, True)
        for seed in seeds:
            init_module(module, seed % TORCH_SEEDS)
            yield {k: v.clone() for k, v in module.state_dict().items()}


def top_guesses(view: RoleView, num_outputs: int) -> Iterator[dict[str, torch.Tensor]]:
    """Initial parameters of the active party's top model (after its leading ReLU), per candidate seed."""
    spec = job_spec(view)
    top: MlpSpec = spec.top
    seeds = seed_candidates(view, spec.active) + [s.seed("top") for s in private_streams(view, spec.active)]
    for seed in seeds:
        module = build_mlp(spec.interactive_out, top.hidden, num_outputs, top.activation, top.dropout, False)
        init_module(module, seed % TORCH_SEEDS)
        yield module.state_dict()


def own_weight_guesses(view: RoleView, dims) -> Iterator[torch.Tensor]:
    """The active party's own interactive weight W_A (drawn after its bottom model), per seed and width."""
    spec = job_spec(view)
    own = spec.party(spec.active).bottom
    std = init_std(view)
    for seed in seed_candidates(view, spec.active):
        for dim in dims:
            torch.manual_seed(seed % TORCH_SEEDS)
            module = build_mlp(dim, own.hidden, own.out, own.activation, own.dropout, True)
            init_module(module, seed % TORCH_SEEDS)
            yield torch.randn(own.out, spec.interactive_out) * std
    for stream in private_streams(view, spec.active):
        generator = torch.Generator().manual_seed(stream.seed("own-weight"))
        yield torch.randn(own.out, spec.interactive_out, generator=generator) * std


# ------------------------------------------------------------------------------------------ algebra

def _solve_left(product: np.ndarray, right: np.ndarray) -> np.ndarray:
    """X with X @ right = product (least squares in float64), for integer matrices."""
    x, *_ = np.linalg.lstsq(right.astype(np.float64).T, product.astype(np.float64).T, rcond=None)
    return x.T


def _integral(x: np.ndarray, tolerance: float = 0.05) -> bool:
    """Whether a solved matrix is integral: the adversary's own test of a guessed weight."""
    return bool(np.max(np.abs(x - np.rint(x))) < tolerance)


def _weight(u: proto.WeightShare, v: proto.WeightShare, layout) -> np.ndarray:
    return (proto.product_weights(u.weights, layout) + proto.product_weights(v.weights, layout)).astype(np.float64)


def _decrypt_rows(engine, data: bytes, rows: int, slot, what: str) -> np.ndarray:
    from vfl.protocol.schemes.paillier import receive
    cts = receive(data, engine, slot.ciphertexts_for(rows), what)
    return unpack_rows(engine.decrypt_ints(cts), rows, slot, what)


def _link_engine(view: RoleView, data_key: bytes) -> object:
    return view.keys[int.from_bytes(data_key, "big")]


def _train_constants(view: RoleView) -> tuple[float, float, float]:
    t = job_spec(view).train
    return t.interactive_lr, t.interactive_momentum, t.weight_decay


# ------------------------------------------------------------------------------------------ A's attack

def activation_attack(view: RoleView, passive: str) -> dict[int, np.ndarray]:
    """The active party's attempt on P's activations: {index of a Forward call in view.calls: H guess}.

    For every guess of P's weight half W^p: V0 = W^p - (W^p - V0) (the masked half P sent at Setup), W0 = U0 + V0
    (U0 from A's own epoch-0 checkpoint). The guess is kept only if z = H W0 solves to integral H at the first
    training forward; A then follows both shares through every step: its own update from the masked gradient
    it decrypts, P's from -Q = H^T D - (H^T D + Q) with D decrypted from the [D] it sent itself.
    """
    calls = [(i, c) for i, c in enumerate(view.calls) if c.passive == passive]
    setup = next(c for _, c in calls if c.method == "Setup")
    layout = view.layouts[passive]
    engine = _link_engine(view, setup.request.active_public_key)
    masked = decode_int_matrix(setup.reply.init_masked, (layout.d, layout.m), proto.share_bits(layout) + 2)
    u0 = view.checkpoint(0)["links"][passive]["share"].weights
    first = next(c for _, c in calls if c.method == "Forward" and c.request.phase == "train")
    z_first = _decrypt_rows(engine, first.reply.z_ciphertexts, len(first.request.rows) // 4,
                            layout.forward_layout(), "z")
    for half in weight_half_guesses(view, passive, layout):
        v0 = half - masked
        if _integral(_solve_left(z_first, _weight(proto.WeightShare(u0), proto.WeightShare(v0), layout))):
            return _follow_shares(view, calls, engine, layout, u0, v0)
    return {}


def _follow_shares(view, calls, engine, layout, u0, v0) -> dict[int, np.ndarray]:
    lr, momentum, decay = _train_constants(view)
    u, v = proto.WeightShare(u0.copy()), proto.WeightShare(v0.copy())
    out: dict[int, np.ndarray] = {}
    h_last = None
    for i, call in calls:
        if call.method == "Forward" and call.reply is not None:
            z = _decrypt_rows(engine, call.reply.z_ciphertexts, len(call.request.rows) // 4, layout.forward_layout(), "z")
            out[i] = np.rint(_solve_left(z, _weight(u, v, layout))).astype(np.int64)
            if call.request.phase == "train":
                h_last = out[i]
        elif call.method == "WeightGradient" and call.reply is not None:
            rows = h_last.shape[0]
            d = _own_gradients(engine, call.request.delta_ciphertexts, rows, layout)
            masked = proto.active_decode_weight_gradient(
                engine, _cts(engine, call.reply.masked_gradient, layout.d * _per_row(layout)), layout)
            q = masked - proto.int_matmul(h_last.T, d)
            proto.apply_update(u, masked, rows, lr, momentum, decay, layout)
            proto.apply_update(v, -q, rows, lr, momentum, decay, layout)
    return out


def _per_row(layout) -> int:
    return layout.gradient_ciphertexts_per_row()


def _cts(engine, data: bytes, count: int) -> list:
    from vfl.protocol.schemes.paillier import receive
    return receive(data, engine, count, "ciphertexts")


def _own_gradients(engine, data: bytes, rows: int, layout) -> np.ndarray:
    """The per-example gradients D the active party sent as [D] (it holds them; here: it decrypts its own)."""
    slot = layout.gradient_layout()
    per_row = _per_row(layout)
    values = unpack_rows(engine.decrypt_ints(_cts(engine, data, rows * per_row)), rows * per_row, slot, "D")
    return values.reshape(rows, per_row * slot.width)[:, :layout.m].astype(np.int64)


# ------------------------------------------------------------------------------------------ P's attack

def gradient_attack(view: RoleView) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
    """The passive party's attempt on W0 and on the released per-example gradients D (A's delta).

    For every guess of A's half W^a: U0 = W^a + (W^p - V0) (the masked half P sent itself), W0 = U0 + V0. Kept
    only if its decrypted input gradient G = D W0^T solves to integral D at the first step. P then follows both
    shares: its own from its -Q, A's from H^T D + Q with the D it just recovered.
    Returns (U0 guess or None, {index of an InputGradient call: D guess}).
    """
    passive = view.party
    calls = list(enumerate(view.calls))
    setup = next(c for _, c in calls if c.method == "Setup")
    layout = view.layouts[passive]
    engine = _link_engine(view, setup.reply.passive_public_key)
    masked = decode_int_matrix(setup.reply.init_masked, (layout.d, layout.m), proto.share_bits(layout) + 2)
    v0 = view.checkpoint(0)["share"].weights
    first_i, first = next((i, c) for i, c in calls if c.method == "InputGradient")
    rows = _rows_of_step(calls, first)
    g_first = _decrypt_rows(engine, first.request.grad_ciphertexts, rows, layout.backward_layout(), "G")
    for half in weight_half_guesses(view, view.spec["active"], layout):
        u0 = half + masked
        w = _weight(proto.WeightShare(u0), proto.WeightShare(v0), layout)
        if _integral(_solve_left(g_first, w.T)):
            return u0, _follow_gradients(view, calls, engine, layout, u0, v0)
    return None, {}


def _rows_of_step(calls, call) -> int:
    forward = next(c for _, c in calls if c.method == "Forward" and c.request.phase == "train"
                   and (c.request.epoch, c.request.step) == (call.request.epoch, call.request.step))
    return len(forward.request.rows) // 4


def _follow_gradients(view, calls, engine, layout, u0, v0) -> dict[int, np.ndarray]:
    lr, momentum, decay = _train_constants(view)
    u, v = proto.WeightShare(u0.copy()), proto.WeightShare(v0.copy())
    out: dict[int, np.ndarray] = {}
    step: dict = {}
    for i, call in calls:
        if call.method == "Forward" and call.request.phase == "train":
            step = {"h": view.own_records[("forward", i)]["exponents"]}
        elif call.method == "WeightGradient" and call.reply is not None:
            step["minus_q"] = view.own_records[("weight_gradient", i)]["share"]
        elif call.method == "InputGradient":
            rows = step["h"].shape[0]
            g = _decrypt_rows(engine, call.request.grad_ciphertexts, rows, layout.backward_layout(), "G")
            d = np.rint(_solve_left(g, _weight(u, v, layout).T)).astype(np.int64)
            out[i] = d
            proto.apply_update(v, step["minus_q"], rows, lr, momentum, decay, layout)
            proto.apply_update(u, proto.int_matmul(step["h"].T, d) - step["minus_q"], rows, lr, momentum, decay, layout)
    return out


def with_dims(spec_dims: int | None):
    """The input widths an adversary tries for a bottom model: the known one, or every plausible one."""
    return (spec_dims,) if spec_dims else FEATURE_DIMS

