"""Who computes what, on which party: plain functions over tensors and ciphertexts, testable in one process.

`layout` fixes the fixed-point scales and slot packing both parties use; `interactive` is the secure
interactive layer of split-NN training (shared weights, Paillier, masks); `plaintext` is the insecure
split-learning baseline used by benchmarks.
"""
