"""Who learns what in encrypted training (docs/protocol.md), checked by an adversary in each role.

Every adversary gets one `RoleView` of a real three-party run (tests/adversary/conftest.py): the job spec, its
own node config, its own keys, every message it sent or received, its log and every file of its node. It runs
the attacks of tests/adversary/attacks.py and the judge compares the result with the truth, which the
adversary never sees. Each test runs on two recorded runs: with a node-local secret seed at every node, and
with none (OS randomness only).

Before commit "secrets from secrets" (on b87a1c7) every party drew its half of the initial interactive weight,
and its models' initial weights, from `party_seed(train.seed, party)`, a public function of the spec: the
tests marked "failed before the fix" below rebuilt those values there and failed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.adversary import attacks
from tests.adversary.conftest import ACTIVE, PASSIVES
from tests.adversary.roles import Truth, role_view
from vfl.protocol.messages import decode_int_matrix
from vfl.protocol import interactive as proto


def _masked_half(view, passive):
    """W^p - V0 as it crossed the wire at Setup (both parties hold it)."""
    setup = next(c for c in view.calls if c.passive == passive and c.method == "Setup")
    layout = view.layouts[passive]
    return decode_int_matrix(setup.reply.init_masked, (layout.d, layout.m), proto.share_bits(layout) + 2)


def _close(a, b, tolerance: float) -> bool:
    return a.shape == b.shape and float(np.max(np.abs(np.asarray(a, dtype=np.float64) -
                                                    np.asarray(b, dtype=np.float64)))) <= tolerance


def _same_state(guess: dict, truth: dict, prefix: str = "") -> bool:
    keys = [k for k in truth if k.startswith(prefix)]
    return bool(keys) and all(k[len(prefix):] in guess and tuple(guess[k[len(prefix):]].shape) == tuple(truth[k].shape)
                              and torch.allclose(guess[k[len(prefix):]], truth[k], atol=1e-6) for k in keys)


# ------------------------------------------------------------------------------------------ active party

@pytest.mark.parametrize("passive", PASSIVES)
def test_active_does_not_learn_the_passive_weight_half_or_share(run, passive):
    """A holds U0 and W^p - V0. It must not learn W^p, hence neither V0 nor W_P = U + V.

    Failed before the fix: W^p = gaussian_half(default_rng(party_seed(train.seed, P) + 1)) was among A's
    guesses, so V0 = W^p - (W^p - V0) and W0 followed exactly."""
    view, truth = role_view(run, ACTIVE), Truth(run)
    layout = view.layouts[passive]
    _, v0 = truth.initial_shares(passive)
    true_half = _masked_half(view, passive) + v0
    hits = [g for g in attacks.weight_half_guesses(view, passive, layout) if _close(g, true_half, 2)]
    assert not hits, f"A rebuilt {passive}'s half of the initial interactive weight from what it holds"


@pytest.mark.parametrize("passive", PASSIVES)
def test_active_does_not_learn_passive_activations(run, passive):
    """A decrypts z = h_P W_P at every forward. It must not learn h_P (nor h_P^T D, which follows from it).

    Failed before the fix: with W0 rebuilt from the public seed, A solved z = H W for H exactly at every
    training and evaluation forward, following V through each update with -Q = H^T D - (H^T D + Q)."""
    view, truth = role_view(run, ACTIVE), Truth(run)
    guesses = attacks.activation_attack(view, passive)
    recovered = [i for i, h in guesses.items() if (t := truth.activations(view.calls[i])) is not None
                 and _close(h, t, 2)]
    assert not recovered, f"A recovered {passive}'s activations at {len(recovered)} of {len(guesses)} forwards"


@pytest.mark.parametrize("passive", PASSIVES)
def test_active_does_not_learn_the_passive_bottom_model(run, passive):
    """A knows P's bottom architecture (spec) and input width (OpenJobReply.feature_dim), not its weights.

    Failed before the fix: P's bottom was initialised from init_module(party_seed(train.seed, P))."""
    view, truth = role_view(run, ACTIVE), Truth(run)
    opened = next(c for c in view.calls if c.passive == passive and c.method == "OpenJob")
    start = truth.passive_start[passive]["bottom"]
    hits = [g for g in attacks.bottom_guesses(view, passive, attacks.with_dims(opened.reply.feature_dim))
            if _same_state(g, start)]
    assert not hits, f"A rebuilt {passive}'s initial bottom model"


# ------------------------------------------------------------------------------------------ passive party

@pytest.mark.parametrize("passive", PASSIVES)
def test_passive_does_not_learn_u_w_or_delta(run, passive):
    """P holds V0, W^p - V0, its activations, its -Q and its decrypted input gradients delta W^T.
    It must not learn U, W_P, z or delta (the per-example gradients, which carry the labels).

    Failed before the fix: W^a = gaussian_half(default_rng(party_seed(train.seed, A) + 1)) was among P's
    guesses, so U0 and W0 followed, and P solved delta W^T for delta exactly at every step."""
    view, truth = role_view(run, passive), Truth(run)
    u0_guess, deltas = attacks.gradient_attack(view)
    u0, _ = truth.initial_shares(passive)
    recovered = [i for i, d in deltas.items() if (t := truth.released_gradients(view.calls[i])) is not None
                 and _close(d, t, 2)]
    learned = (["A's initial share U0 (so W0)"] if u0_guess is not None and _close(u0_guess, u0, 2) else []) + \
              ([f"delta at {len(recovered)} of {len(deltas)} steps"] if recovered else [])
    assert not learned, f"{passive} learned {learned}"


@pytest.mark.parametrize("passive", PASSIVES)
def test_passive_does_not_learn_the_active_models(run, passive):
    """P knows A's architecture from the spec. It must not learn the top model, A's bottom or A's own W_A.

    Failed before the fix: A seeded all three from party_seed(train.seed, A) (the top with + 7)."""
    view, truth = role_view(run, passive), Truth(run)
    start = truth.active_start["model"]
    learned = []
    if any(_same_state(g, start, "top.1.") for g in attacks.top_guesses(view, num_outputs=1)):
        learned.append("the initial top model")
    if any(_same_state(g, start, "bottom.") for g in attacks.bottom_guesses(view, ACTIVE, attacks.FEATURE_DIMS)):
        learned.append("A's initial bottom model")
    if any(_close(g.numpy(), start["own_weight"].numpy(), 1e-6)
           for g in attacks.own_weight_guesses(view, attacks.FEATURE_DIMS)):
        learned.append("A's own initial interactive weight")
    assert not learned, f"{passive} rebuilt {learned}"


def test_passive_does_not_learn_another_passive_model(run):
    """A passive party learns nothing of another passive party: not even its initial bottom model.

    Failed before the fix: every party's bottom came from party_seed(train.seed, name), names in the spec."""
    view, truth = role_view(run, PASSIVES[0]), Truth(run)
    other = PASSIVES[1]
    start = truth.passive_start[other]["bottom"]
    hits = [g for g in attacks.bottom_guesses(view, other, attacks.FEATURE_DIMS) if _same_state(g, start)]
    assert not hits, f"{PASSIVES[0]} rebuilt {other}'s initial bottom model"


def quoted_secrets(view, truth) -> list[str]:
    """The other parties' secrets written out anywhere this party holds: their IDs outside the intersection,
    where their files live on their disks, and the decimal digits of the initial weight shares it does not
    hold (30-80 bit integers: no accident)."""
    held = view.holdings_text()
    party = view.party
    own_ids = truth.table_ids(party)
    found = [f"{p}'s ID {i!r}" for p in (ACTIVE,) + PASSIVES if p != party
             for i in sorted(truth.table_ids(p) - own_ids) if i.encode() in held]
    found += [f"{p}'s directory {truth.run.home(p)}" for p in (ACTIVE,) + PASSIVES
              if p != party and str(truth.run.home(p)).encode() in held]
    for passive in PASSIVES:
        u0, v0 = truth.initial_shares(passive)
        secret = {ACTIVE: v0, passive: u0}.get(party, np.concatenate([u0, v0]))
        found += [f"a share entry of W_{passive}" for v in secret.reshape(-1)[:16]
                  if abs(int(v)) > 10**6 and str(int(v)).encode() in held]
    return found


@pytest.mark.parametrize("party", (ACTIVE,) + PASSIVES)
def test_nothing_a_party_holds_quotes_a_peer_secret(run, party):
    """Every party scans everything it holds (its log, every file of its node, every message) for the other
    parties' secrets written out. It must find none."""
    found = quoted_secrets(role_view(run, party), Truth(run))
    assert not found, f"{party} holds {found[:5]}"


def test_the_holdings_scan_finds_a_planted_secret(runs):
    """Control: an ID of A's that P does not hold and an entry of A's share, written into P's log, are found."""
    run = runs["os"]
    view, truth = role_view(run, PASSIVES[0]), Truth(run)
    foreign = sorted(truth.table_ids(ACTIVE) - truth.table_ids(PASSIVES[0]))[0]
    u0, _ = truth.initial_shares(PASSIVES[0])
    view.log += f"\nrow {foreign} share {int(u0[0, 0])}\n"
    found = quoted_secrets(view, truth)
    assert any(foreign in f for f in found) and any("share entry" in f for f in found), found


def test_the_attacks_win_where_nodes_share_their_secret_seed(runs):
    """The adversaries can succeed: give the passive party the active node's secret seed (as if a deployment
    or a test federation had given every node the same one) and it rebuilds A's half of W_P and its top model.
    This is what the node-local seeds of vfl.api.Federation must prevent (one per party, none derived from
    another's)."""
    run = runs["seeded"]
    view, truth = role_view(run, PASSIVES[0]), Truth(run)
    assert "secret_seed" in view.config
    view.config["secret_seed"] = role_view(run, ACTIVE).config["secret_seed"]
    layout = view.layouts[PASSIVES[0]]
    active_half, _ = truth.initial_halves(PASSIVES[0])
    assert any(_close(g, active_half, 2) for g in attacks.weight_half_guesses(view, ACTIVE, layout))
    assert any(_same_state(g, truth.active_start["model"], "top.1.") for g in attacks.top_guesses(view, 1))
