"""Roles: what each client identity may ask of a node's Control (and Score) service.

A pure table, no I/O: the node (vfl/node/server.py `Node.require_role`) looks up the caller's role and asks
`allows(role, action)`. The roles are ordered; each holds its own rights and every right of the roles below it:

    read      list, show and watch jobs: read their results and reports
    predict   + submit prediction jobs and call Score
    train     + submit any job kind, cancel jobs

The node's own identity holds every right. An identity the node config gives no role (a peer's certificate, for
one) holds none: the safe default.
"""
from __future__ import annotations

#: the roles from least to most rights; each includes every right of those before it
ROLES = ("read", "predict", "train")

#: actions that need no job kind, with the least role that may take them
_ACTIONS = {"submit": "predict", "list": "read", "show": "read", "watch": "read", "score": "predict",
            "cancel": "train"}

#: job kinds the `predict` role may submit; every other kind needs `train`
_PREDICT_KINDS = frozenset({"predict"})

#: what each action is, for messages
_DESCRIBED = {"submit": "submit jobs", "list": "list jobs", "show": "show a job", "watch": "watch a job",
              "score": "call Score", "cancel": "cancel a job"}


def required_role(action: str) -> str:
    """The least role that may take `action`: `submit:<kind>`, `submit` (some kind: checked before the spec is
    read), list, show, watch, score, cancel."""
    if action.startswith("submit:"):
        kind = action.split(":", 1)[1]
        if not kind:
            raise ValueError(f"action {action!r}: submit needs a job kind (submit:<kind>)")
        return "predict" if kind in _PREDICT_KINDS else "train"
    try:
        return _ACTIONS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r} (known: submit:<kind>, {', '.join(sorted(_ACTIONS))})") \
            from None


def allows(role: str | None, action: str) -> bool:
    """Whether `role` (None: no role) may take `action`."""
    needed = required_role(action)
    if role is None:
        return False
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    return ROLES.index(role) >= ROLES.index(needed)


def describe(action: str) -> str:
    """`submit:train` -> 'submit a train job'; `list` -> 'list jobs'."""
    if action.startswith("submit:"):
        return f"submit a {action.split(':', 1)[1]} job"
    return _DESCRIBED.get(action, action)


def refusal(who: str, role: str | None, action: str, party: str) -> str:
    """The message of a refused action: who asked, what, the role it needs, and the role it has."""
    has = f"has role {role!r}" if role else "has no role"
    needs = "role 'predict' (prediction jobs) or 'train' (any job)" if action == "submit" else \
        f"role {required_role(action)!r}"
    return f"{who!r} may not {describe(action)} at {party!r}: that needs {needs}, and {who!r} {has} there " \
        "(node config `roles`)"
