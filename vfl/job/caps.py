"""How much work a job may ask of this node: the size caps of its node config's `policy` (issue 15, item 4).

A job spec comes from the active party, so without caps a peer decides how much memory and CPU a passive node
spends: `hidden: [8192, 8192]` once took a passive node to 1.72 GB. Every node checks a spec against its own
caps before it does anything for the job (OpenJob at a passive node, submission at the active node), and only
for the parts it runs itself: its own bottom model, the interactive layer, and at the active party the top
model. A refusal names the spec key, the cap and the node config key that sets it.

The parameter count needs this party's feature count, which is known once its dataset is loaded, so it is
checked separately (:func:`check_parameters`), still inside OpenJob at a passive node.
"""
from __future__ import annotations

from vfl.errors import PermissionDenied
from vfl.job.spec import JobSpec, MlpSpec


def _refuse(key: str, spec: JobSpec, party: str, asks: str, cap_key: str, cap: int) -> PermissionDenied:
    return PermissionDenied(f"{key}: job {spec.job_id!r} asks {party!r} for {asks}; {party!r} allows at most "
                            f"{cap} (node config policy.{cap_key})")


def _bottom_key(spec: JobSpec, party: str, field: str) -> str:
    """The spec key of `party`'s bottom-model field: its override, if it has one, else the shared default."""
    own = spec.party(party).bottom
    shared = all(p.bottom == own for p in spec.parties)
    return f"model.bottom.{field}" if shared else f"model.bottom_overrides.{party}.{field}"


def _check_mlp(mlp: MlpSpec, key: str, spec: JobSpec, party: str, policy) -> None:
    if mlp.module is not None:  # the party's own model from its own node config: its operator sized it
        return
    if len(mlp.hidden) > policy.max_hidden_layers:
        raise _refuse(key, spec, party, f"{len(mlp.hidden)} hidden layers", "max_hidden_layers",
                      policy.max_hidden_layers)
    widest = max(mlp.hidden, default=0)
    if widest > policy.max_hidden_width:
        raise _refuse(key, spec, party, f"a hidden layer of {widest} units", "max_hidden_width",
                      policy.max_hidden_width)


def check_caps(spec: JobSpec, policy, party: str) -> None:
    """Refuse a spec that asks `party` for more than its policy caps allow (PermissionDenied naming the cap)."""
    bottom = spec.party(party).bottom
    _check_mlp(bottom, _bottom_key(spec, party, "hidden"), spec, party, policy)
    if bottom.out > policy.max_bottom_out:
        raise _refuse(_bottom_key(spec, party, "out"), spec, party, f"a bottom output of {bottom.out}",
                      "max_bottom_out", policy.max_bottom_out)
    if party == spec.active:
        _check_mlp(spec.top, "model.top.hidden", spec, party, policy)
        for other in spec.passives:  # the active party runs the interactive layer with every passive party
            if other.bottom.out > policy.max_bottom_out:
                raise _refuse(_bottom_key(spec, other.name, "out"), spec, party,
                              f"an interactive input of {other.bottom.out} from {other.name!r}", "max_bottom_out",
                              policy.max_bottom_out)
    if spec.interactive_out > policy.max_interactive_out:
        raise _refuse("model.interactive.out", spec, party, f"an interactive output of {spec.interactive_out}",
                      "max_interactive_out", policy.max_interactive_out)
    if spec.train.max_batch_size > policy.max_batch_size:
        raise _refuse("train.batch_size", spec, party, f"batches of {spec.train.max_batch_size} rows", "max_batch_size",
                      policy.max_batch_size)
    if spec.kind == "train" and spec.train.epochs > policy.max_epochs:
        raise _refuse("train.epochs", spec, party, f"{spec.train.epochs} epochs", "max_epochs", policy.max_epochs)
    if spec.crypto.mode != "plaintext" and spec.crypto.key_bits > policy.max_key_bits:
        raise _refuse("crypto.key_bits", spec, party, f"{spec.crypto.key_bits}-bit keys", "max_key_bits",
                      policy.max_key_bits)


def mlp_parameters(in_features: int, hidden: tuple[int, ...], out: int) -> int:
    """Weights and biases of a fully connected network in_features -> hidden... -> out."""
    widths = [in_features, *hidden, out]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def party_parameters(spec: JobSpec, party: str, feature_dim: int, outputs: int = 1) -> int:
    """Plaintext parameters `party` holds for this job: its default-MLP bottom model (a model of its own node
    config is its operator's choice and not counted), its part of the interactive layer, and at the active party
    the top model with `outputs` outputs (the number of classes of a multiclass task, else 1)."""
    bottom = spec.party(party).bottom
    count = 0
    if bottom.module is None and feature_dim > 0:
        count += mlp_parameters(feature_dim, bottom.hidden, bottom.out)
    m = spec.interactive_out
    if party != spec.active:
        return count + bottom.out * m  # its share of its interactive weight
    count += sum(p.bottom.out * m for p in spec.passives) + m  # its shares of the passives' weights, the bias
    if feature_dim > 0:
        count += bottom.out * m  # its own interactive weight
    return count + mlp_parameters(m, spec.top.hidden, outputs)


def check_parameters(spec: JobSpec, policy, party: str, feature_dim: int, outputs: int = 1) -> None:
    """Refuse a job whose model part at `party` has more parameters than its policy.max_parameters."""
    count = party_parameters(spec, party, feature_dim, outputs)
    if count > policy.max_parameters:
        raise _refuse("model", spec, party, f"a model part of {count:,} parameters (with its {feature_dim} features)",
                      "max_parameters", policy.max_parameters)
