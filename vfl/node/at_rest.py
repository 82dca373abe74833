"""A node's encryption at rest, from its config (`at_rest`): load the keys, protect jobs_dir, re-seal at start.

The crypto and the choice of which files are sealed live in vfl/data/sealed.py; this module only reads the node
config's key files and tells that layer where the node's job files are. The node calls `open_at_rest(config,
create=True)` at start; the `vfl` commands that read job files (export, lineage verify, at-rest) call it without
`create`, so a command never makes a key.
"""
from __future__ import annotations

import logging
from pathlib import Path

from vfl.data import sealed
from vfl.data.atomic import atomic_write_stored
from vfl.errors import ConfigError

log = logging.getLogger("vfl.node")


def _first_sealed(root: Path) -> tuple[str, str] | None:
    """(file, key id) of some sealed file under `root`, or None."""
    if not root.is_dir():
        return None
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.name.endswith(".tmp"):
                with open(path, "rb") as handle:
                    head = handle.read(sealed.HEADER.size + sealed.TAG_BYTES)
                if sealed.is_sealed(head):
                    rel = path.relative_to(root).as_posix()
                    return rel, sealed.parse_header(head, rel)[0]
        except OSError:
            continue
    return None


def load_keys(config) -> sealed.AtRestKeys | None:
    """The node's at-rest keys, or None when encryption is off and no key file exists (nothing to open)."""
    at_rest = config.at_rest
    if not at_rest.key.exists() and (not at_rest.encrypt or at_rest.key_is_default):
        return None   # the default key is made by the node at its first start; until then nothing is sealed
    current = sealed.load_key_file(at_rest.key, "at_rest.key")
    previous = tuple(sealed.load_key_file(path, f"at_rest.previous_keys[{i}]")
                     for i, path in enumerate(at_rest.previous_keys))
    return sealed.AtRestKeys(current, previous)


def create_default_key(config) -> str:
    """Make the default key file at the node's first start, unless jobs_dir already holds files sealed under a key
    that would be lost (then a new key could never open them: the operator must restore the key file)."""
    at_rest = config.at_rest
    found = _first_sealed(config.jobs_dir)
    if found is not None:
        raise ConfigError(f"at_rest.key: the key file {at_rest.key} does not exist, but jobs_dir holds files sealed "
                          f"under key {found[1]} (e.g. {found[0]}): restore that key file (or name it in at_rest.key "
                          "or at_rest.previous_keys) rather than start with a new key that cannot open them")
    kid = sealed.new_key_file(at_rest.key)
    log.info("encryption at rest: created key %s in %s (mode 0600); keep a copy where the jobs_dir's backups are "
             "not", kid, at_rest.key)
    return kid


def open_at_rest(config, create: bool = False) -> sealed.AtRestKeys | None:
    """Load the keys and protect jobs_dir in this process (sealing new files if `at_rest.encrypt`); with `create`
    (the node at start) a missing default key file is created first. Returns the keys, or None."""
    at_rest = config.at_rest
    if create and at_rest.encrypt and at_rest.key_is_default and not at_rest.key.exists():
        create_default_key(config)
    keys = load_keys(config)
    if keys is not None:
        sealed.protect(config.jobs_dir, keys, seal=at_rest.encrypt)
    return keys


def reseal_jobs(config, keys: sealed.AtRestKeys, dry_run: bool = False) -> sealed.ResealReport:
    """Every job file under the current key: what a previous key sealed is re-encrypted, what is still plaintext
    (written before encryption was turned on) is sealed. Run by the node at start, and by `vfl at-rest rotate`."""
    def write(path: Path, stored: bytes) -> None:
        atomic_write_stored(path, stored, "re-sealed job file", config.party)
    return sealed.reseal_tree(config.jobs_dir, keys, write, dry_run=dry_run)
