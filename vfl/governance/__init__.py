"""Governance a party runs on its own: the data audit before training (audit.py, detectors.py), the audit log,
signed lineage, retention and the role table of its clients (roles.py).

Nothing here talks to a peer; every report stays with the party that made it.
"""
