"""Privacy beyond encryption: label-leakage defenses, DP accounting, attacks and the per-job report."""
