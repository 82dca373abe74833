"""Node config (`vfl serve --config node.yaml`): who this party is, whom it trusts, where its data lives.

Every artifact a job writes goes under ``jobs_dir/<job_id>/``, so audit, lineage and retention can later
work on one directory per job.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vfl.compute.config import ComputeConfig, parse_compute
from vfl.config_util import Section, check_address, check_import_path, check_model_name, check_name, load_yaml
from vfl.data.dataset import DatasetConfig
from vfl.governance.retention import KINDS, RetentionConfig
from vfl.governance.roles import ROLES as CLIENT_ROLES
from vfl.data.ids import parse_id_format
from vfl.errors import ConfigError, quote

ROLES = ("active", "passive")


@dataclass(frozen=True)
class PeerConfig:
    name: str
    address: str
    identity: str  # expected identity in the peer's certificate (a DNS SAN or the CN)


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class PolicyConfig:
    """What this node agrees to when a peer's job asks for it; the job spec cannot override it.

    The defaults refuse the insecure options, so an active party cannot downgrade a passive one.
    """
    min_key_bits: int = 2048            # Paillier keys below this are refused
    allow_plaintext: bool = False       # crypto.mode: plaintext sends activations and gradients in the clear
    allow_attack_harness: bool = False  # privacy.attacks sends per-row attack scores to the active party
    # Caps on the work a job may ask of this node (vfl/job/caps.py). The defaults are well above the models
    # tabular VFL uses (the examples: hidden [32], out 16, batch 512) and bound one job's memory (docs/operations.md).
    max_key_bits: int = 3072            # larger keys cost ~(bits/2048)^3 in time per operation
    max_hidden_layers: int = 8          # hidden layers of a default-MLP bottom (and, at the active party, top)
    max_hidden_width: int = 1024        # units of any one hidden layer
    max_bottom_out: int = 64            # a bottom model's output width, the interactive layer's input
    max_interactive_out: int = 64       # the interactive layer's output width
    max_parameters: int = 4_000_000     # plaintext parameters of this party's model part
    max_batch_size: int = 8192          # rows per training batch (evaluation batches are 2048)
    max_epochs: int = 1000
    max_open_jobs_per_peer: int = 4     # jobs one peer may have open here at once
    # Feature columns this node trains on although the data audit (vfl/governance) flags them as personal data;
    # every other flagged feature column makes a job refuse to open (vfl audit shows what is flagged and why).
    allow_pii_columns: frozenset[str] = frozenset()


#: default of limits.open_jobs_per_minute: a few jobs a minute is plenty for real work, and every new job allows
#: one PSI session, i.e. one look at this party's IDs
DEFAULT_OPEN_JOBS_PER_MINUTE = 30


@dataclass(frozen=True)
class LimitsConfig:
    """How much each peer may ask of this node; set by its operator, never by a job spec."""
    # New jobs (OpenJob with resume_epoch -1) each peer may open per minute; also the burst it may open at once.
    # Resumes of a job whose PSI ran here do not count (see vfl/job/registry.py).
    open_jobs_per_minute: int = DEFAULT_OPEN_JOBS_PER_MINUTE


#: default of timeouts.resume_wait_seconds: how long an active job waits for a lost passive party to come back
DEFAULT_RESUME_WAIT_SECONDS = 60.0
#: default of timeouts.call_seconds: the longest one call to a peer may take. A stopped or unreachable peer is
#: noticed by keepalive within about 30 s (psi.transport.keepalive); this deadline is for a peer that still answers
#: pings but whose handler never returns. The largest step the default policy caps allow takes well under it.
DEFAULT_CALL_SECONDS = 600.0
#: default of timeouts.lease_seconds: a passive job closes when its active party has sent nothing for this long (its
#: active node renews every job's lease every third of it, also while it waits for another peer)
DEFAULT_LEASE_SECONDS = 90.0
#: default of timeouts.drain_seconds: on SIGTERM, how long a node gives its jobs to suspend (stop at the next step,
#: tell their peers) before it stops serving; under Kubernetes' default 30 s grace period
DEFAULT_DRAIN_SECONDS = 20.0


@dataclass(frozen=True)
class TimeoutsConfig:
    """How long this node waits for its peers; set by its operator, never by a job spec."""
    resume_wait_seconds: float = DEFAULT_RESUME_WAIT_SECONDS
    call_seconds: float = DEFAULT_CALL_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    drain_seconds: float = DEFAULT_DRAIN_SECONDS


@dataclass(frozen=True)
class ServedModelConfig:
    """One model this node serves online under `name` (node config `serving.models.<name>`)."""
    name: str
    path: Path | None = None     # an exported model part (`vfl export JOB --out DIR`)
    job: str | None = None       # or a finished training job of this node, exported when the model is first loaded
    table: str | None = None     # this node's dataset that holds the online features (None: the model uses none here)


@dataclass(frozen=True)
class RateLimit:
    ids_per_second: float
    burst: float


#: the rate limit of every caller the node config names no other for: generous for one caller's interactive
#: scoring, and a bound on how fast any one caller learns z_P of the rows it asks (docs/serving.md)
DEFAULT_SCORE_RATE = RateLimit(ids_per_second=1000.0, burst=2000.0)
#: missing_ids policies of a passive party: say an ID is unknown here, or only that it was not scored
MISSING_ID_POLICIES = ("reveal", "withhold")


@dataclass(frozen=True)
class ServingConfig:
    """Online scoring (docs/serving.md): the models this node serves and how much each caller may ask."""
    listen: str | None = None           # a second port that serves only Score (and health), with the same mTLS
    models: dict[str, ServedModelConfig] = field(default_factory=dict)
    missing_ids: str = "reveal"         # at a passive party: reveal | withhold
    max_ids: int = 256                  # IDs per Score request (and per call between the parties)
    micro_batch: bool = True            # at the active party: concurrent requests of a model share one call
    rate_limit: RateLimit = DEFAULT_SCORE_RATE                  # per caller, unless named in rate_limits
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)   # caller identity -> its own limit


@dataclass(frozen=True)
class AtRestConfig:
    """Encryption at rest of the job files that hold weights or IDs (vfl/data/sealed.py, vfl/node/at_rest.py)."""
    encrypt: bool = True
    # the key new files are sealed with: 64 hex digits in a file (a mounted Kubernetes Secret, for one)
    key: Path = Path("keys/at-rest.key")
    # True when node.yaml names no key: the node creates this one (0600, OS generator) at its first start
    key_is_default: bool = True
    # keys of a rotation in progress: files they sealed are still read, and re-sealed under `key` at start
    previous_keys: tuple[Path, ...] = ()


@dataclass(frozen=True)
class NodeConfig:
    party: str
    role: str
    identity: str  # the name in this node's own certificate (defaults to the party name)
    listen: str
    health_listen: str | None
    tls: TlsConfig | None  # None only when insecure
    insecure: bool
    peers: tuple[PeerConfig, ...]
    data_dir: Path
    jobs_dir: Path
    datasets: dict[str, DatasetConfig] = field(default_factory=dict)
    admins: tuple[str, ...] = ()
    # Client certificate identity -> role (vfl/governance/roles.py: read, predict, train), with every `admins`
    # entry folded in as `train`. This node's own identity has every right; any other identity has none.
    roles: dict[str, str] = field(default_factory=dict)
    workers: int = 2                     # cores of the local compute backend (and a private Ray instance's CPUs)
    compute: ComputeConfig = field(default_factory=ComputeConfig)   # where the heavy work runs (vfl/compute)
    max_payload_mb: int = 256
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    # Bottom models this party offers: name -> "package.module:factory"; a job spec may name one for this
    # party only (model.bottom_overrides.<party>.module). Imported only when a job uses it.
    models: dict[str, str] = field(default_factory=dict)
    # For reproducible tests and benchmarks only: the node-local seed this party draws its secrets from (its
    # half of each shared weight, its models' initial weights). It never leaves the node and no job spec can
    # set it. Unset (production), those secrets come from the OS generator. See vfl/job/private_random.py.
    secret_seed: int | None = None
    # Send each reply's handler time to the caller (trailing metadata), so a benchmark can tell transport
    # from the peer's work. Off by default: the time depends on this party's data (see docs/protocol.md).
    report_handler_timing: bool = False
    # how long each kind of a finished job's files is kept (vfl/governance/retention.py); empty: everything kept
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    # host:port of the Prometheus endpoint (vfl/node/metrics.py); None: no metrics endpoint
    metrics_listen: str | None = None
    # The tamper-evident audit log (vfl/governance/audit_log.py) and its key. Default: beside jobs_dir, in audit/.
    # Put the key where whoever can write the log cannot (in Kubernetes: a Secret).
    audit_log: Path | None = None
    audit_key: Path | None = None
    serving: ServingConfig = field(default_factory=ServingConfig)
    at_rest: AtRestConfig = field(default_factory=AtRestConfig)
    source: Path | None = None

    def peer(self, name: str) -> PeerConfig:
        for p in self.peers:
            if p.name == name:
                return p
        raise ConfigError(f"peers: no peer named {name!r} (configured: {[p.name for p in self.peers]})")

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(f"datasets: party {self.party!r} has no dataset named {name!r} "
                              f"(configured: {sorted(self.datasets)})")
        return self.datasets[name]

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else (base / p)


def _missing_rules(data, where: str) -> dict[str, object]:
    """`missing:` of a dataset: column -> 'median' | 'mean' | a constant (a number or text)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping of column to 'median', 'mean' or a constant, "
                          f"got {quote(data)}")
    for column, rule in data.items():
        if isinstance(rule, bool) or not isinstance(rule, (str, int, float)) or rule == "":
            raise ConfigError(f"{where}.{column}: must be 'median', 'mean', a number or a text constant, "
                              f"got {quote(rule)}")
        if isinstance(rule, float) and not math.isfinite(rule):  # a NaN filler would leave the gap it fills
            raise ConfigError(f"{where}.{column}: must be a finite number, got {rule}")
    return {str(column): rule for column, rule in data.items()}


def parse_retention(sec: Section) -> RetentionConfig:
    """node.yaml `retention`: days per kind after a job's end (0: at the next sweep; null or absent: kept)."""
    days = {}
    for kind in KINDS:
        value = sec.float(kind, None, min_value=0.0, max_value=36_500.0)
        if value is not None:
            days[kind] = value
    sweep = sec.float("sweep_minutes", 60.0, min_value=1.0, max_value=10_080.0)
    sec.reject_unknown()
    return RetentionConfig(days=days, sweep_minutes=sweep)


def _check_client_identity(identity: str, where: str, peers: list[PeerConfig]) -> None:
    if "*" in identity:
        raise ConfigError(f"{where}: {identity!r}: wildcard identities are not allowed; list each identity")
    for peer in peers:
        if identity == peer.identity:
            raise ConfigError(f"{where}: {identity!r} is the identity of peer {peer.name!r}; a peer's certificate "
                              "must not also act as a client of this node (give the client its own certificate "
                              "identity)")


def parse_roles(root: Section, admins: tuple[str, ...], peers: list[PeerConfig], own: str) -> dict[str, str]:
    """node.yaml `roles: {identity: read | predict | train}` with `admins` folded in as `train`.

    Refused: a peer's identity (a peer is never a client), a wildcard, an identity that `admins` and `roles`
    give different roles, and a lesser role for this node's own identity (it always has every right)."""
    roles: dict[str, str] = {}
    for i, admin in enumerate(admins):
        _check_client_identity(admin, f"{root.key('admins')}[{i}]", peers)
        roles[admin] = "train"
    sec = root.section("roles")
    for identity, role in sec.data.items():
        where = sec.key(str(identity))
        if not isinstance(identity, str) or not identity:
            raise ConfigError(f"{where}: a role is given to a certificate identity, got {quote(identity)}")
        if role not in CLIENT_ROLES:
            raise ConfigError(f"{where}: must be one of {list(CLIENT_ROLES)}, got {quote(role)}")
        _check_client_identity(identity, where, peers)
        if identity in admins and role != "train":
            raise ConfigError(f"{where}: {identity!r} is also listed in admins, which means role 'train'; "
                              "list it in one place")
        if identity == own and role != "train":
            raise ConfigError(f"{where}: {identity!r} is this node's own identity, which has every right; "
                              f"role {role!r} would not restrict it (remove the entry)")
        roles[identity] = role
    sec._used.update(sec.data)
    roles.pop(own, None)  # this node itself: every right, and identified as 'self'
    return roles


def parse_at_rest(sec: Section, base_dir: Path, jobs_dir: Path) -> AtRestConfig:
    """node.yaml `at_rest`: encrypt (default true), key (default keys/at-rest.key beside jobs_dir), previous_keys."""
    encrypt = sec.bool("encrypt", True)
    named = sec.str("key")
    key = _resolve(base_dir, named) if named else jobs_dir.parent / "keys" / "at-rest.key"
    previous = tuple(_resolve(base_dir, p) for p in sec.str_list("previous_keys"))
    if key in previous:
        raise ConfigError(f"{sec.key('previous_keys')}: {key} is also at_rest.key, the current key")
    sec.reject_unknown()
    return AtRestConfig(encrypt=encrypt, key=key, key_is_default=named is None, previous_keys=previous)


def parse_policy(pol: Section) -> PolicyConfig:
    """node.yaml `policy`; a cap set to 0 or below, or above what a job spec can ask for, is refused."""
    d = PolicyConfig()
    policy = PolicyConfig(
        min_key_bits=pol.int("min_key_bits", d.min_key_bits, min_value=1024, max_value=4096),
        max_key_bits=pol.int("max_key_bits", d.max_key_bits, min_value=1024, max_value=4096),
        allow_plaintext=pol.bool("allow_plaintext", d.allow_plaintext),
        allow_attack_harness=pol.bool("allow_attack_harness", d.allow_attack_harness),
        max_hidden_layers=pol.int("max_hidden_layers", d.max_hidden_layers, min_value=0, max_value=1000),
        max_hidden_width=pol.int("max_hidden_width", d.max_hidden_width, min_value=1, max_value=65536),
        max_bottom_out=pol.int("max_bottom_out", d.max_bottom_out, min_value=1, max_value=4096),
        max_interactive_out=pol.int("max_interactive_out", d.max_interactive_out, min_value=1, max_value=1024),
        max_parameters=pol.int("max_parameters", d.max_parameters, min_value=1, max_value=10**12),
        max_batch_size=pol.int("max_batch_size", d.max_batch_size, min_value=1, max_value=65536),
        max_epochs=pol.int("max_epochs", d.max_epochs, min_value=1, max_value=10000),
        max_open_jobs_per_peer=pol.int("max_open_jobs_per_peer", d.max_open_jobs_per_peer, min_value=1,
                                       max_value=10000),
        allow_pii_columns=frozenset(pol.str_list("allow_pii_columns", [])))
    if policy.max_key_bits < policy.min_key_bits:
        raise ConfigError(f"policy.max_key_bits: {policy.max_key_bits} is below policy.min_key_bits "
                          f"({policy.min_key_bits}): no key size would be allowed")
    return policy


def _rate_limit(sec: Section, default: RateLimit) -> RateLimit:
    rate = sec.float("ids_per_second", default.ids_per_second, min_value=0.001, max_value=1e9)
    # without a burst of its own, a caller given a rate may spend one second's worth at once
    burst = sec.float("burst", default.burst if "ids_per_second" not in sec.data else max(rate, 1.0),
                      min_value=1.0, max_value=1e9)
    sec.reject_unknown()
    return RateLimit(ids_per_second=rate, burst=burst)


def parse_serving(sec: Section, base_dir: Path) -> ServingConfig:
    """node.yaml `serving`: models served online, the serving port, the missing-ID policy, rate limits."""
    listen = sec.str("listen")
    if listen is not None:
        check_address(listen, sec.key("listen"))
    models: dict[str, ServedModelConfig] = {}
    models_sec = sec.section("models")
    for name, item in models_sec.data.items():
        name = check_model_name(str(name), models_sec.key(str(name)))
        entry = Section(item, models_sec.key(name))
        path, job = entry.str("path"), entry.str("job")
        if (path is None) == (job is None):
            raise ConfigError(f"{entry.where}: give exactly one of path (an exported model part, `vfl export`) "
                              "and job (a finished training job of this node)")
        models[name] = ServedModelConfig(name=name, path=_resolve(base_dir, path) if path else None, job=job,
                                         table=entry.str("table"))
        entry.reject_unknown()
    models_sec._used.update(models_sec.data)
    limits_sec = sec.section("rate_limits")
    default = _rate_limit(limits_sec.section("default"), DEFAULT_SCORE_RATE)
    per_caller = {str(who): _rate_limit(limits_sec.section(str(who)), default)
                  for who in limits_sec.data if who != "default"}
    limits_sec._used.update(limits_sec.data)
    serving = ServingConfig(listen=listen, models=models,
                            missing_ids=sec.str("missing_ids", "reveal", choices=MISSING_ID_POLICIES),
                            max_ids=sec.int("max_ids", 256, min_value=1, max_value=4096),
                            micro_batch=sec.bool("micro_batch", True), rate_limit=default, rate_limits=per_caller)
    sec.reject_unknown()
    return serving


def parse_node_config(data: dict, base_dir: Path, source: Path | None = None) -> NodeConfig:
    root = Section(data, "")
    party = check_name(root.str("party", required=True), "party")
    role = root.str("role", required=True, choices=ROLES)
    identity = root.str("identity", party)
    listen = check_address(root.str("listen", "0.0.0.0:50051"), "listen")
    health = root.str("health_listen")
    if health is not None:
        check_address(health, "health_listen")
    insecure = root.bool("insecure", False)
    tls_sec = root.section("tls")
    tls = None
    if tls_sec.data:
        tls = TlsConfig(cert=_resolve(base_dir, tls_sec.str("cert", required=True)),
                        key=_resolve(base_dir, tls_sec.str("key", required=True)),
                        ca=_resolve(base_dir, tls_sec.str("ca", required=True)))
        tls_sec.reject_unknown()
    if tls is None and not insecure:
        raise ConfigError("tls: required (cert, key, ca) unless 'insecure: true' is set for tests")
    peers: list[PeerConfig] = []
    for i, item in enumerate(root.list("peers")):
        sec = Section(item, f"peers[{i}]")
        name = check_name(sec.str("name", required=True), sec.key("name"))
        if name == party:
            raise ConfigError(f"{sec.key('name')}: a node cannot list itself ({name!r}) as a peer")
        if any(p.name == name for p in peers):
            raise ConfigError(f"{sec.key('name')}: duplicate peer {name!r}")
        peers.append(PeerConfig(name=name,
                                address=check_address(sec.str("address", required=True), sec.key("address")),
                                identity=sec.str("identity", name)))
        sec.reject_unknown()
    data_dir = _resolve(base_dir, root.str("data_dir", "data"))
    jobs_dir = _resolve(base_dir, root.str("jobs_dir", "jobs"))
    datasets: dict[str, DatasetConfig] = {}
    ds_sec = root.section("datasets")
    for name, item in ds_sec.data.items():
        sec = Section(item, ds_sec.key(str(name)))
        features = sec.raw("features")
        if features is not None:
            features = tuple(sec.str_list("features"))
        datasets[str(name)] = DatasetConfig(
            name=str(name), path=_resolve(data_dir, sec.str("path", required=True)),
            id_column=sec.str("id", "id"), label=sec.str("label"), features=features,
            categorical=tuple(sec.str_list("categorical")),
            id_format=parse_id_format(sec.raw("id_format"), sec.key("id_format")),
            missing=_missing_rules(sec.raw("missing"), sec.key("missing")))
        sec.reject_unknown()
    ds_sec._used.update(ds_sec.data)
    admins = tuple(root.str_list("admins"))
    roles = parse_roles(root, admins, peers, identity)
    workers = root.int("workers", 2, min_value=1, max_value=64)
    comp = root.section("compute")
    compute = parse_compute(comp)
    max_payload = root.int("max_payload_mb", 256, min_value=1, max_value=4096)
    pol = root.section("policy")
    policy = parse_policy(pol)
    pol.reject_unknown()
    lim = root.section("limits")
    limits = LimitsConfig(open_jobs_per_minute=lim.int("open_jobs_per_minute", DEFAULT_OPEN_JOBS_PER_MINUTE,
                                                       min_value=1, max_value=100_000))
    lim.reject_unknown()
    tim = root.section("timeouts")
    timeouts = TimeoutsConfig(
        resume_wait_seconds=tim.float("resume_wait_seconds", DEFAULT_RESUME_WAIT_SECONDS, min_value=0.0,
                                      max_value=86_400.0),
        call_seconds=tim.float("call_seconds", DEFAULT_CALL_SECONDS, min_value=1.0, max_value=86_400.0),
        lease_seconds=tim.float("lease_seconds", DEFAULT_LEASE_SECONDS, min_value=3.0, max_value=86_400.0),
        drain_seconds=tim.float("drain_seconds", DEFAULT_DRAIN_SECONDS, min_value=0.0, max_value=3600.0))
    tim.reject_unknown()
    models_sec = root.section("models")
    models = {check_model_name(str(name), models_sec.key(str(name))):
              check_import_path(value, models_sec.key(str(name))) for name, value in models_sec.data.items()}
    models_sec._used.update(models_sec.data)
    secret_seed = root.int("secret_seed", None, min_value=0, max_value=2**256 - 1)
    report_handler_timing = root.bool("report_handler_timing", False)
    retention = parse_retention(root.section("retention"))
    metrics_listen = root.str("metrics_listen")
    if metrics_listen is not None:
        metrics_listen = check_address(metrics_listen, root.key("metrics_listen"))
    aud = root.section("audit")
    audit_dir = jobs_dir.parent / "audit"
    audit_log = _resolve(base_dir, aud.str("log", str(audit_dir / "audit.jsonl")))
    audit_key = _resolve(base_dir, aud.str("key", str(audit_dir / "audit.key")))
    aud.reject_unknown()
    serving = parse_serving(root.section("serving"), base_dir)
    for name, model in serving.models.items():
        if model.table is not None and model.table not in datasets:
            raise ConfigError(f"serving.models.{name}.table: no dataset named {model.table!r} "
                              f"(configured: {sorted(datasets)})")
    at_rest = parse_at_rest(root.section("at_rest"), base_dir, jobs_dir)
    root.reject_unknown()
    return NodeConfig(party=party, role=role, identity=identity, listen=listen, health_listen=health, tls=tls, insecure=insecure,
                      peers=tuple(peers), data_dir=data_dir, jobs_dir=jobs_dir, datasets=datasets,
                      admins=admins, roles=roles, workers=workers, compute=compute, max_payload_mb=max_payload,
                      policy=policy,
                      limits=limits, timeouts=timeouts, models=models, secret_seed=secret_seed,
                      report_handler_timing=report_handler_timing, audit_log=audit_log, audit_key=audit_key,
                      metrics_listen=metrics_listen, retention=retention, serving=serving, at_rest=at_rest,
                      source=source)


def load_node_config(path: str | Path) -> NodeConfig:
    path = Path(path)
    data = load_yaml(path, "node config")
    try:
        return parse_node_config(data, path.parent.resolve(), source=path)
    except ConfigError as exc:
        raise ConfigError(f"node config {path}: {exc}") from None
