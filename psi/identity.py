"""Who a certificate speaks for: the one rule both the PSI service and the vfl node apply to TLS peers.

It has no networking in it, so ``psi.transport`` (the PSI server) and ``vfl.transport`` (the node's TLS set-up and
``vfl certs``) import it alike instead of one borrowing it from the other's server module.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable


def is_dns_name(value: str) -> bool:
    """Whether a SAN string (as gRPC's auth context reports it) is a DNS name, not an IP, email or URI SAN."""
    try:
        ipaddress.ip_address(value)
        return False
    except ValueError:
        return "@" not in value and ":" not in value


def certificate_names(sans: Iterable[str], common_names: Iterable[str]) -> list[str]:
    """The identities of a certificate: its DNS-name SANs; its CN only when it has no DNS-name SAN.

    As in RFC 6125, a CN is not consulted once DNS names are present, so it cannot add an identity. IP, email
    and URI SANs are never identities (and do not stop the CN from counting).
    """
    names: list[str] = []
    for name in [s for s in sans if is_dns_name(s)] or list(common_names):
        if name not in names:
            names.append(name)
    return names
