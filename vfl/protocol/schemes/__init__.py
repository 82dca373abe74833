"""The schemes of the interactive layer, by the name a job spec gives as `crypto.mode`."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from vfl.errors import ConfigError
from vfl.protocol.schemes import paillier, plaintext


@dataclass(frozen=True)
class Scheme:
    name: str
    module: ModuleType

    @property
    def encrypted(self) -> bool:
        return self.module.ActiveHalf.encrypted

    def new_active_key(self, key_bits: int, compute):
        """The active party's key for a whole job (None without encryption), held by the node's compute backend."""
        return self.module.new_key(key_bits, compute)

    def active_half(self, peer, layout, hyper, own_key, key_bits, compute, wrap_ops):
        return self.module.ActiveHalf(peer, layout, hyper, own_key, key_bits, compute, wrap_ops)

    def passive_half(self, layout, hyper, key_bits, compute, wrap_ops):
        return self.module.PassiveHalf(layout, hyper, key_bits, compute, wrap_ops)

    def keep_ready(self, own_key, count: int) -> None:
        """Keep the randomness of `count` encryptions under the active party's own key computed ahead (the job's
        halves share that key, so the job sums what each link's half asks for)."""
        if own_key is not None and hasattr(self.module, "keep_ready"):
            self.module.keep_ready(own_key, count)


SCHEMES: dict[str, Scheme] = {m.NAME: Scheme(m.NAME, m) for m in (paillier, plaintext)}


def scheme_for(mode: str) -> Scheme:
    try:
        return SCHEMES[mode]
    except KeyError:
        raise ConfigError(f"crypto.mode: {mode!r} is not a scheme (known: {sorted(SCHEMES)})") from None
