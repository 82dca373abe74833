"""Test-only hook for tests/deploy/test_loopback_release.py: records every Paillier key pair a node process generates.

The loopback test puts this directory on PYTHONPATH (so Python imports it at start-up) and names a directory outside
both releases' volumes in VFL_TEST_PAILLIER_RECORD_DIR. Each key pair the job runtime asks for
(vfl.protocol.schemes.paillier.new_key, used by the active and the passive side alike) is written there as JSON, so the
test can then search every file the releases wrote for the private keys. Without the variable it does nothing.
"""
import json
import os
import sys
import uuid

_RECORD_DIR = os.environ.get("VFL_TEST_PAILLIER_RECORD_DIR")

if _RECORD_DIR:
    from vfl.protocol.schemes import paillier as _paillier

    _generate = _paillier.new_key

    def _recording_new_private_ops(*args, **kwargs):
        ops = _generate(*args, **kwargs)
        key = getattr(ops, "private_key", None)
        record = {"pid": os.getpid(), "argv": sys.argv,
                  "p": str(int(key.p)) if key is not None else None,
                  "q": str(int(key.q)) if key is not None else None}
        path = os.path.join(_RECORD_DIR, f"{os.getpid()}-{uuid.uuid4().hex}.json")
        with open(path, "w") as f:
            json.dump(record, f)
        return ops

    _paillier.new_key = _recording_new_private_ops
