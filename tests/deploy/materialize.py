"""Turn a rendered pod spec into files and a command line on this machine, the way the kubelet would.

Every volume mount becomes a directory under a temporary root: ConfigMap and Secret volumes get their keys as files
(with the declared items and defaultMode), emptyDir an empty directory, a PersistentVolumeClaim a directory shared by
every pod that mounts the same claim. Absolute paths under a mount path, wherever the manifests or the node config
mention them, are rewritten to the same place under the root. Nothing else is changed, except what loopback forces:
listen addresses and peer addresses become 127.0.0.1 ports, given by the caller.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml


@dataclass
class Mounts:
    root: Path
    paths: dict[str, Path] = field(default_factory=dict)   # container mountPath -> host directory

    def host(self, path: str) -> str:
        """The host path of an absolute container path; refuses paths that no volume provides."""
        best = None
        for mount in self.paths:
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                if best is None or len(mount) > len(best):
                    best = mount
        if best is None:
            raise AssertionError(f"{path} is not on any mounted volume (mounts: {sorted(self.paths)})")
        rest = path[len(best):].lstrip("/")
        return str(self.paths[best] / rest) if rest else str(self.paths[best])

    def rewrite(self, text: str) -> str:
        """Rewrite absolute paths under a mount inside a string (an arg, an env value)."""
        def sub(m: re.Match) -> str:
            try:
                return self.host(m.group(0))
            except AssertionError:
                return m.group(0)
        return re.sub(r"(?<![\w.:])/[\w./-]+", sub, text)


def container(pod_spec: dict, name: str, init: bool = False) -> dict:
    key = "initContainers" if init else "containers"
    found = [c for c in pod_spec.get(key) or [] if c["name"] == name]
    assert found, f"no {key[:-1]} named {name!r}"
    return found[0]


def materialize(pod_spec: dict, ctr: dict, root: Path, configmaps: dict[str, dict[str, str]],
                secrets: dict[str, dict[str, bytes]], claims: dict[str, Path],
                transform: Callable[[str, str, str, Mounts], str] | None = None) -> Mounts:
    """Create the container's volume mounts under root; returns the mount table.

    transform(configmap_name, key, text, mounts) may rewrite a ConfigMap file (e.g. the node config's ports).
    """
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = Mounts(root=root)
    pending: list[tuple[str, str, str, Path, int]] = []
    for m in ctr.get("volumeMounts") or []:
        assert "subPath" not in m, "subPath mounts do not receive ConfigMap updates; the chart must not use them"
        vol = volumes[m["name"]]
        if "persistentVolumeClaim" in vol:
            host = claims.setdefault(vol["persistentVolumeClaim"]["claimName"],
                                     root.parent / "claims" / vol["persistentVolumeClaim"]["claimName"])
            host.mkdir(parents=True, exist_ok=True)
        else:
            host = root / "volumes" / m["name"]
            host.mkdir(parents=True, exist_ok=True)
            if "configMap" in vol:
                name = vol["configMap"]["name"]
                assert name in configmaps, f"ConfigMap {name} is mounted but not rendered"
                for key, path, mode in _items(vol["configMap"], configmaps[name]):
                    pending.append((name, key, configmaps[name][key], host / path, mode))
            elif "secret" in vol:
                name = vol["secret"]["secretName"]
                assert name in secrets, f"Secret {name} is mounted but the test did not create it"
                for key, path, mode in _items(vol["secret"], secrets[name]):
                    _write(host / path, secrets[name][key], mode)
            else:
                assert "emptyDir" in vol, f"unsupported volume {vol}"
        mounts.paths[m["mountPath"]] = host
    for name, key, text, path, mode in pending:   # after every mount is known, so transforms can rewrite paths
        _write(path, (transform(name, key, text, mounts) if transform else text).encode(), mode)
    return mounts


def _items(source: dict, data: dict) -> list[tuple[str, str, int]]:
    mode = source.get("defaultMode", 0o644)
    items = source.get("items")
    if items is None:
        return [(k, k, mode) for k in data]
    for it in items:
        assert it["key"] in data, f"item {it['key']} is not in the object (keys: {sorted(data)})"
    return [(it["key"], it["path"], it.get("mode", mode)) for it in items]


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o600)
    path.write_bytes(data)
    os.chmod(path, mode)


def command_line(ctr: dict, mounts: Mounts, executables: dict[str, str]) -> list[str]:
    """The container's command + args with mount paths rewritten; the image's executables mapped to ours."""
    argv = list(ctr.get("command") or []) + list(ctr.get("args") or [])
    assert argv, "the chart must state the command (the image's entrypoint is not visible here)"
    argv = [mounts.rewrite(a) for a in argv]
    argv[0] = executables[argv[0]]
    return argv


def environment(ctr: dict, mounts: Mounts, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    for e in ctr.get("env") or []:
        assert "valueFrom" not in e, f"env {e['name']}: valueFrom is not reproduced by this test"
        env[e["name"]] = mounts.rewrite(str(e["value"]))
    return env


def rewrite_node_config(text: str, mounts: Mounts, listen_ports: dict[int, int], peer_addresses: dict[str, str]) -> str:
    """The node config as this loopback run needs it: paths under the root, ports and peers on 127.0.0.1."""
    cfg = yaml.safe_load(text)

    def port_of(address: str) -> int:
        return int(address.rsplit(":", 1)[1])

    for key in ("listen", "health_listen"):
        if cfg.get(key):
            cfg[key] = f"127.0.0.1:{listen_ports[port_of(cfg[key])]}"
    for key in ("data_dir", "jobs_dir"):   # a Job pod does not mount the data volume and never reads these
        cfg[key] = mounts.rewrite(cfg[key])
    cfg["tls"] = {k: mounts.host(v) for k, v in cfg["tls"].items()}
    for peer in cfg.get("peers") or []:
        peer["address"] = peer_addresses[peer["name"]]
    return yaml.safe_dump(cfg, sort_keys=False)
