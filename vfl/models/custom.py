"""Bottom models other than the default MLP: a party's own torch `nn.Module`, named in the job spec.

The job spec is written by the active party and read by every node, so it never carries code or an import
path. It only *names* a model (`model.bottom_overrides.<party>.module: <name>`); the node of that party,
and no other, turns the name into code through its own config:

    models:                       # node.yaml
      tabular: "bank_models.nets:tabular_bottom"

`tabular_bottom(in_features: int, out_features: int) -> torch.nn.Module`. A node therefore only ever imports
what its own operator configured, whatever a peer's job spec says.
"""
from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from vfl.errors import ConfigError, DataError
from vfl.config_util import check_import_path

Factory = Callable[[int, int], nn.Module]
log = logging.getLogger("vfl.models")


def import_factory(path: str, where: str) -> Factory:
    """Import 'package.module:attr' (attr may be dotted) and check that it is callable."""
    check_import_path(path, where)
    module_name, attr = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the operator's to fix
        raise ConfigError(f"{where}: cannot import module {module_name!r} for {path!r}: "
                          f"{type(exc).__name__}: {exc} (is it on the node's PYTHONPATH?)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r} ({path!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: {path!r} is not callable; it must be factory(in_features, out_features) "
                          "-> torch.nn.Module")
    return obj


def import_path_of(factory: Any, where: str) -> str:
    """The import path a node process can use to find `factory` again (for `Party(bottom=...)`).

    Only module-level functions or classes qualify: a lambda, a closure or anything defined in `__main__`
    (a notebook cell, a script) cannot be imported by another process.
    """
    if not callable(factory):
        raise ConfigError(f"{where}: must be a callable factory(in_features, out_features) -> torch.nn.Module, "
                          f"got {type(factory).__name__}")
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname:
        raise ConfigError(f"{where}: {factory!r} has no module-level name; pass a function defined at the top "
                          "level of an importable module")
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ConfigError(f"{where}: {module}.{qualname} is a lambda or a nested function, which the node "
                          "processes cannot import; define the factory at the top level of a module")
    if module == "__main__":
        raise ConfigError(f"{where}: {qualname} is defined in __main__ (a notebook or a script), which the node "
                          "processes cannot import; move it into a module file next to it and import it from there")
    path = f"{module}:{qualname}"
    try:
        found = import_factory(path, where)
    except ConfigError:
        found = None
    if found is not factory:
        raise ConfigError(f"{where}: importing {path!r} does not give back the same object; pass a module-level "
                          "function or class")
    return path


def module_search_root(factory: Any) -> Path | None:
    """The directory to put on a node process's sys.path so it can import `factory`'s module."""
    module = sys.modules.get(getattr(factory, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or not file:
        return None
    root = Path(file).resolve().parent
    depth = module.__name__.count(".") + (1 if Path(file).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    return root


def resolve_factory(models: Mapping[str, Any], name: str | None, party: str, for_peer: bool = False) -> Factory | None:
    """The factory for model `name` from a node config's `models:` (or a baseline's) mapping.

    Values may be import paths or, in one process (the centralized baseline), callables. With `for_peer`,
    the error goes to another organization (the active party): it names the job spec's key and the model
    name, but neither this node's other model names nor its import paths, which the node logs instead.
    """
    if name is None:
        return None
    where = f"model.bottom_overrides.{party}.module"
    if name not in models:
        defined = sorted(models)
        listed = "" if for_peer else f" (its node config's models: {defined if defined else 'none defined'})"
        raise ConfigError(f"{where}: the job asks for bottom model {name!r} at party {party!r}, but that party "
                          f"defines no model of that name{listed}")
    value = models[name]
    if callable(value):
        return value
    try:
        return import_factory(value, f"models.{name}")
    except ConfigError as exc:
        raise _peer_safe(exc, for_peer, party, f"{where}: party {party!r} could not load its bottom model {name!r} "
                         "(the reason is in that party's node log)") from None


def _peer_safe(error: Exception, for_peer: bool, party: str, peer_message: str) -> Exception:
    """`error` itself, or (with `for_peer`) `peer_message` of the same class, the detail going to this node's log.

    The detail can hold the operator's own exception text (file paths, ...) or the model's parameter names and
    shapes, neither of which is the active party's business; the peer learns only which spec key failed.
    """
    if not for_peer:
        return error
    log.error("bottom model of party %r: %s", party, error)
    return type(error)(peer_message)


def build_bottom(bottom, in_features: int, factory: Factory | None = None, party: str = "?",
                 seed: int | None = None, for_peer: bool = False) -> nn.Module:
    """A party's bottom model: the default MLP of the spec, or `factory(in_features, bottom.out)`.

    The caller seeds torch's generator first from its own private randomness (vfl/job/private_random.py), so a
    custom module's own (torch default) initialisation is that party's secret too; the default MLP gets
    init_module with `seed`.
    With `for_peer` (a passive party, whose errors go to the active party), errors name only the spec key and
    the model's name; the details are logged here.
    """
    from vfl.models.mlp import build_mlp, init_module
    if getattr(bottom, "module", None) is None:
        module = build_mlp(in_features, bottom.hidden, bottom.out, bottom.activation, bottom.dropout, True)
        if seed is not None:
            init_module(module, seed)
        return module
    where = f"model.bottom_overrides.{party}.module"
    if factory is None:
        raise ConfigError(f"{where}: bottom model {bottom.module!r} of party {party!r} has no factory here")
    label = f"bottom model {bottom.module!r} of party {party!r}"
    generic = (f"{where}: party {party!r} could not build its bottom model {bottom.module!r} "
               "(details in its node log)")
    try:
        module = factory(in_features, bottom.out)
    except Exception as exc:  # noqa: BLE001 - user code: report it with the model's name
        raise _peer_safe(ConfigError(f"{where}: {label}: factory({in_features}, {bottom.out}) failed: "
                                     f"{type(exc).__name__}: {exc}"), for_peer, party, generic) from None
    if not isinstance(module, nn.Module):
        raise _peer_safe(ConfigError(f"{where}: {label}: factory returned {type(module).__name__}, not a "
                                     "torch.nn.Module"), for_peer, party, generic)
    check_output_width(module, in_features, bottom.out, f"model.bottom_overrides.{party}.out", label,
                       for_peer=for_peer, party=party, module_key=where)
    return module


def check_output_width(module: nn.Module, in_features: int, out: int, where: str, label: str,
                       for_peer: bool = False, party: str = "?", module_key: str | None = None) -> None:
    """A dry forward of two zero rows (eval mode, no gradient, torch's generator untouched): (2, out) or error.

    With `for_peer`, a failed forward names only `module_key` (and a wrong width only `where` and `out`, both
    from the job spec); the details are logged here.
    """
    was_training = module.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            module.eval()
            y = module(torch.zeros(2, in_features))
    except Exception as exc:  # noqa: BLE001 - user code
        raise _peer_safe(ConfigError(f"{where}: {label}: a forward pass on a (2, {in_features}) float32 batch "
                                     f"failed: {type(exc).__name__}: {exc}"), for_peer, party,
                         f"{module_key or where}: {label}: a forward pass failed at party {party!r} "
                         "(details in its node log)") from None
    finally:
        module.train(was_training)
    shape = tuple(y.shape) if isinstance(y, torch.Tensor) else None
    if shape != (2, out):
        got = f"shape {shape}" if shape is not None else type(y).__name__
        raise _peer_safe(ConfigError(f"{where}: {label} must map (batch, {in_features}) to (batch, {out}), "
                                     f"but returned {got} for a batch of 2"), for_peer, party,
                         f"{where}: {label} does not map a batch to (batch, {out}) at party {party!r} "
                         "(details in its node log)")


def check_saved_module(saved: dict, module: str | None, model_job: str | None, party: str) -> None:
    """A prediction job must rebuild the bottom architecture the model part was trained with."""
    trained = saved.get("bottom_module")
    if trained != module:
        raise DataError(f"model job {model_job!r}: the saved model part of {party!r} was trained with bottom "
                        f"{'model ' + repr(trained) if trained else 'the default MLP'}, but this job asks for "
                        f"{'model ' + repr(module) if module else 'the default MLP'}")


def load_part(model: torch.nn.Module, state: dict, bottom, model_job: str | None, party: str,
              for_peer: bool = False) -> None:
    """Load a saved model part; with `for_peer`, the mismatching parameter names and shapes stay in the log."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        what = f"bottom model {bottom.module!r}" if bottom.module else "the default MLP"
        hint = "did the node config's models: entry change since training?"
        raise _peer_safe(DataError(f"model job {model_job!r}: the saved model part of {party!r} does not fit "
                                   f"{what} as built now ({hint}): {exc}"), for_peer, party,
                         f"model job {model_job!r}: the saved model part of {party!r} does not fit {what} as "
                         f"built now ({hint} details in its node log)") from None
