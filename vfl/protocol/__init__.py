"""Who computes what, on which party: plain functions over tensors and ciphertexts, testable in one process.

`messages` are the typed messages between an active and a passive party, `link` the interface that carries
them (with an in-process implementation), `layout` the fixed-point scales and slot packing both parties use,
`interactive` the math of the secure interactive layer (shared weights, Paillier, masks), and `schemes` the two
halves of each scheme: `paillier`, and `plaintext` (insecure split learning, for tests and benchmarks only).
"""
