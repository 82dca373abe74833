"""vfl: vertical federated learning between organizations.

Layers, each in its own folder:
  vfl.data      party tables: loading and validation
  vfl.he        packed Paillier engine (no networking)
  vfl.protocol  who computes what in split-NN training (plain functions, testable in one process)
  vfl.transport gRPC services, TLS, chunking and message validation
  vfl.node      the long-running party node and its job runtime
  vfl.api       the Python API notebooks import; vfl.cli is a thin layer over it
"""

__version__ = "0.1.0"
