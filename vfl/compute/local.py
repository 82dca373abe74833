"""The local backend: the node's own cores, through vfl.he's spawn process pool and psi's compute engine."""
from __future__ import annotations

import threading

from psi.core.engine import Engine as PsiEngine
from vfl import he
from vfl.he import ifma
from vfl.he.batch import KeyedEngine


class LocalCompute:
    name = "local"

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._psi: PsiEngine | None = None
        self._lock = threading.Lock()

    @property
    def parallelism(self) -> int:
        return self.workers

    def private_key(self, key_bits: int) -> KeyedEngine:
        return KeyedEngine(he.new_private_ops(key_bits, workers=self.workers))

    def public_key(self, n: int, djn_base: int, djn_slack_bits: int | None = None) -> KeyedEngine:
        return KeyedEngine(he.new_public_ops(n, workers=self.workers, djn_base=djn_base,
                                             djn_slack_bits=djn_slack_bits))

    def psi_engine(self) -> PsiEngine:
        with self._lock:
            if self._psi is None:
                self._psi = PsiEngine(self.workers)
            return self._psi

    def describe(self) -> dict:
        # modexp: whether decryption runs on AVX-512 IFMA here ("ifma") or on gmpy2, and why (vfl/he/ifma.py)
        return {"backend": self.name, "workers": self.workers, "modexp": ifma.backend()}

    def close(self) -> None:
        with self._lock:
            engine, self._psi = self._psi, None
        if engine is not None:
            engine.close()
