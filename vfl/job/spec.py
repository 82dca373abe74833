"""The job spec (`vfl run job.yaml`): what to train, on which parties' datasets, with which model and crypto.

Passive parties' datasets are named here but resolved by each party's own node config, so the active
party never dictates file paths at another organization.
"""
from __future__ import annotations

import dataclasses
import math
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vfl.config_util import Section, check_model_name, check_name, load_yaml, quote, yaml_mapping
from vfl.errors import ConfigError, VflError
from vfl.he.keys import ALLOWED_KEY_BITS
from vfl.job.split import AUTO_BATCH_MAX
from vfl.privacy.defenses import DEFENSE_CHOICES
from vfl.protocol.schemes import SCHEMES

TASKS = ("binary", "multiclass", "regression")
# psi: align IDs only (the active party keeps the common IDs); cardinality: learn only how many IDs the parties share
KINDS = ("train", "predict", "psi", "cardinality")
CRYPTO_MODES = tuple(SCHEMES)
#: seeds seed numpy generators (the layout's checksum weights), which take non-negative integers
MAX_SEED = (1 << 63) - 1
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class MlpSpec:
    hidden: tuple[int, ...] = (32,)
    out: int = 16
    activation: str = "relu"
    dropout: float = 0.0
    # A bottom model from the party's own node config (`models: {name: "pkg.mod:factory"}`) instead of the
    # MLP; only that party's node resolves the name. hidden/activation/dropout are then unused.
    module: str | None = None


@dataclass(frozen=True)
class PartySpec:
    name: str
    dataset: str
    bottom: MlpSpec


@dataclass(frozen=True)
class SplitSpec:
    validation: float = 0.1
    test: float = 0.2
    seed: int = 0


#: the validation metric early stopping watches, per task, and whether larger is better
STOPPING_METRICS = {"binary": ("auc", "accuracy"), "multiclass": ("accuracy",), "regression": ("rmse",)}
LOWER_IS_BETTER = ("rmse",)


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """Stop when the validation metric has not improved by more than `min_delta` for `patience` epochs, and keep
    the best epoch's parameters at every party (the active party reopens each passive party at that epoch)."""
    patience: int = 5
    metric: str = "auto"             # auto: auc (binary), accuracy (multiclass), rmse (regression)
    min_delta: float = 0.0

    def metric_for(self, task: str) -> str:
        return STOPPING_METRICS[task][0] if self.metric == "auto" else self.metric


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = 5
    batch_size: int | None = None    # None: sized to the training rows (vfl.job.split.effective_batch_size)
    lr: float = 0.01                 # bottom and top models (Adam)
    interactive_lr: float = 0.05     # the shared interactive layer (SGD with momentum; linear, so shares stay shares)
    interactive_momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint: bool = True
    early_stopping: EarlyStoppingSpec | None = None

    @property
    def max_batch_size(self) -> int:
        """The largest training batch this spec can make: what the layout, the caps and a passive party check."""
        return self.batch_size if self.batch_size is not None else AUTO_BATCH_MAX


@dataclass(frozen=True)
class CryptoSpec:
    mode: str = "paillier"           # "plaintext" is insecure split learning, for benchmarks and tests only
    key_bits: int = 2048
    precision_bits: int = 22         # fixed-point fraction bits for activations and interactive weights
    gradient_bits: int = 24          # fixed-point fraction bits for per-example gradients
    stat_security_bits: int = 40     # statistical masking slack
    activation_bound: float = 32.0   # bottom outputs are clamped to +-bound before the interactive layer


@dataclass(frozen=True)
class PsiSpec:
    strip: bool = True
    lowercase: bool = False


@dataclass(frozen=True)
class PrivacySpec:
    defense: str = "auto"            # auto, or a name in vfl.privacy.defenses.DEFENSES
    noise_multiplier: float | None = None
    clip_norm: float | None = None
    strength: float | None = None    # marvell: noise power per batch / squared distance of the class means
    delta: float | None = None
    record_gradients: bool = False   # opt-in attack harness hook at passive parties
    attacks: bool = False


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    kind: str
    task: str
    active: str
    parties: tuple[PartySpec, ...]
    interactive_out: int = 16
    top: MlpSpec = MlpSpec(hidden=(16,), out=0)
    split: SplitSpec = SplitSpec()
    train: TrainSpec = TrainSpec()
    crypto: CryptoSpec = CryptoSpec()
    psi: PsiSpec = PsiSpec()
    privacy: PrivacySpec = PrivacySpec()
    model_job: str | None = None     # for kind=predict: the training job whose saved parts to use
    # binary training: the label value whose probability the model predicts. It names one of the active party's
    # label values, so it stays there: `for_peers` leaves it out of the spec every passive party receives.
    positive_class: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def psi_mode(self) -> str:
        """The mode of this job's one PSI session: only a cardinality job reveals nothing but the size."""
        return "cardinality" if self.kind == "cardinality" else "intersection"

    @property
    def interactive_init_std(self) -> float:
        """Xavier-normal std of the interactive layer, over all parties' bottom outputs."""
        fan_in = sum(p.bottom.out for p in self.parties)
        return math.sqrt(2.0 / (fan_in + self.interactive_out))

    @property
    def passives(self) -> tuple[PartySpec, ...]:
        return tuple(p for p in self.parties if p.name != self.active)

    def party(self, name: str) -> PartySpec:
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError(f"parties: no party named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(spec_to_yaml_dict(self), sort_keys=False)

    def for_peers(self) -> "JobSpec":
        """The spec as the passive parties receive it (OpenJob): without what only the active party may know."""
        return dataclasses.replace(self, positive_class=None)


def _mlp(sec: Section, default: MlpSpec, allow_out: bool = True, allow_module: bool = False) -> MlpSpec:
    module = None
    if allow_module:
        module = sec.raw("module")
        if module is not None:
            module = check_model_name(module, sec.key("module"))
    hidden = sec.list("hidden", list(default.hidden))
    for i, h in enumerate(hidden):
        if isinstance(h, bool) or not isinstance(h, int) or h < 1 or h > 65536:
            raise ConfigError(f"{sec.key('hidden')}[{i}]: must be a positive integer, got {quote(h)}")
    out = sec.int("out", default.out, min_value=1, max_value=4096) if allow_out else default.out
    act = sec.str("activation", default.activation, choices=("relu", "tanh", "sigmoid", "gelu", "leaky_relu"))
    dropout = sec.float("dropout", default.dropout, min_value=0.0, max_value=0.9)
    sec.reject_unknown()
    return MlpSpec(hidden=tuple(hidden), out=out, activation=act, dropout=dropout, module=module)


def check_job_id(job_id: str) -> str:
    """A job id as specs, `vfl jobs show` and `vfl cancel` accept it (it names a folder under jobs_dir)."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id) or job_id in (".", ".."):
        raise ConfigError(f"job_id: {quote(job_id)} must be 1-63 letters, digits, '_', '.' or '-'")
    return job_id


def parse_job_spec(data: dict[str, Any]) -> JobSpec:
    root = Section(data, "")
    job_id = check_job_id(root.str("job_id") or f"job-{uuid.uuid4().hex[:12]}")
    kind = root.str("kind", "train", choices=KINDS)
    task = root.str("task", "binary", choices=TASKS)
    active = check_name(root.str("active", required=True), "active")

    model = root.section("model")
    if isinstance(model.data.get("bottom"), dict) and "module" in model.data["bottom"]:
        raise ConfigError("model.bottom.module: a party's own bottom model is named per party, under "
                          "model.bottom_overrides.<party>.module (each party's node resolves only its own)")
    default_bottom = _mlp(model.section("bottom"), MlpSpec())
    overrides = model.section("bottom_overrides")
    overrides._used.update(overrides.data)
    inter = model.section("interactive")
    interactive_out = inter.int("out", 16, min_value=1, max_value=1024)
    inter.reject_unknown()
    top = _mlp(model.section("top"), MlpSpec(hidden=(16,), out=0), allow_out=False)
    model.reject_unknown()

    parties_sec = root.section("parties", required=True)
    parties: list[PartySpec] = []
    for name, item in parties_sec.data.items():
        name = check_name(str(name), parties_sec.key(str(name)))
        sec = Section(item, parties_sec.key(name))
        bottom = default_bottom
        if name in overrides.data:
            base = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(default_bottom).items()
                    if k != "module"}
            sub = overrides.data[name] or {}
            if not isinstance(sub, dict):
                raise ConfigError(f"model.bottom_overrides.{name}: must be a mapping")
            if sub.get("module") is not None:
                for key in ("hidden", "activation", "dropout"):
                    if key in sub:
                        raise ConfigError(f"model.bottom_overrides.{name}.{key}: not used with module "
                                          f"{quote(sub['module'])} (the party's own model defines its layers; "
                                          "only out applies)")
            base.update(sub)
            bottom = _mlp(Section(base, f"model.bottom_overrides.{name}"), default_bottom, allow_module=True)
        parties.append(PartySpec(name=name, dataset=sec.str("dataset", required=True), bottom=bottom))
        sec.reject_unknown()
    parties_sec._used.update(parties_sec.data)
    names = [p.name for p in parties]
    if active not in names:
        raise ConfigError(f"active: {active!r} is not among parties {names}")
    if len(parties) < 2:
        raise ConfigError(f"parties: at least two parties are needed, got {names}")
    for name in overrides.data:
        if name not in names:
            raise ConfigError(f"model.bottom_overrides.{name}: not a party of this job ({names})")

    s = root.section("split")
    split = SplitSpec(validation=s.float("validation", 0.1, min_value=0.0, max_value=0.5),
                      test=s.float("test", 0.2, min_value=0.0, max_value=0.5),
                      seed=s.int("seed", 0, min_value=0, max_value=MAX_SEED))
    if split.validation + split.test >= 0.9:
        raise ConfigError("split: validation + test must leave at least 10% of rows for training")
    s.reject_unknown()

    t = root.section("train")
    train = TrainSpec(epochs=t.int("epochs", 5, min_value=1, max_value=10000),
                      batch_size=t.int("batch_size", None, min_value=1, max_value=65536),
                      lr=t.float("lr", 0.01, min_value=0.0, max_value=10.0),
                      interactive_lr=t.float("interactive_lr", 0.05, min_value=0.0, max_value=10.0),
                      interactive_momentum=t.float("interactive_momentum", 0.9, min_value=0.0, max_value=0.999),
                      weight_decay=t.float("weight_decay", 0.0, min_value=0.0, max_value=1.0),
                      seed=t.int("seed", 0, min_value=0, max_value=MAX_SEED), checkpoint=t.bool("checkpoint", True),
                      early_stopping=_early_stopping(t, task))
    t.reject_unknown()

    c = root.section("crypto")
    crypto = CryptoSpec(mode=c.str("mode", "paillier", choices=CRYPTO_MODES),
                        key_bits=c.int("key_bits", 2048, min_value=1024, max_value=4096),
                        precision_bits=c.int("precision_bits", 22, min_value=8, max_value=24),
                        gradient_bits=c.int("gradient_bits", 24, min_value=8, max_value=24),
                        stat_security_bits=c.int("stat_security_bits", 40, min_value=40, max_value=128),
                        activation_bound=c.float("activation_bound", 32.0, min_value=1.0, max_value=1024.0))
    if crypto.key_bits not in ALLOWED_KEY_BITS:
        raise ConfigError(f"crypto.key_bits: must be one of {list(ALLOWED_KEY_BITS)} (2048 is the default, 1024 only "
                          f"for tests), got {crypto.key_bits}")
    c.reject_unknown()

    p = root.section("psi")
    psi = PsiSpec(strip=p.bool("strip", True), lowercase=p.bool("lowercase", False))
    p.reject_unknown()

    pr = root.section("privacy")
    privacy = PrivacySpec(defense=pr.str("defense", "auto", choices=DEFENSE_CHOICES),
                          noise_multiplier=pr.float("noise_multiplier", None, min_value=0.0),
                          clip_norm=pr.float("clip_norm", None, min_value=0.0),
                          strength=pr.float("strength", None, min_value=0.0, max_value=1000.0),
                          delta=pr.float("delta", None, min_value=0.0, max_value=1.0),
                          record_gradients=pr.bool("record_gradients", False),
                          attacks=pr.bool("attacks", False))
    pr.reject_unknown()
    if privacy.defense == "marvell" and task != "binary":
        raise ConfigError(f"privacy.defense: marvell shapes its noise to two label classes, so it needs task: binary "
                          f"(this job's task is {task})")

    model_job = root.str("model_job")
    if kind == "predict" and not model_job:
        raise ConfigError("model_job: required for kind: predict (the training job whose model parts to use)")
    positive_class = _positive_class(root, kind, task)
    if train.early_stopping is not None:
        _check_early_stopping(split, train, privacy)
    root.reject_unknown()
    spec = JobSpec(job_id=job_id, kind=kind, task=task, active=active, parties=tuple(parties),
                   interactive_out=interactive_out, top=top, split=split, train=train, crypto=crypto,
                   psi=psi, privacy=privacy, model_job=model_job, positive_class=positive_class)
    check_layout_fits(spec)
    return spec


def _positive_class(root: Section, kind: str, task: str) -> str | None:
    """`positive_class`: a binary training job's positive label value, as text (the label column's values are
    compared as text, vfl/data/labels.py)."""
    value = root.raw("positive_class")
    if value is None:
        return None
    if task != "binary" or kind != "train":
        raise ConfigError(f"positive_class: only a binary training job chooses its positive class (this is a "
                          f"{task} {kind} job; a prediction uses the class its model was trained with)")
    if isinstance(value, bool):  # YAML reads yes/no/true/false unquoted as booleans
        raise ConfigError(f"positive_class: {quote(value)} reads as a boolean in YAML; quote the label value "
                          "as it appears in the label column, e.g. positive_class: 'yes'")
    if isinstance(value, float) or not isinstance(value, (str, int)) or not str(value).strip() or len(str(value)) > 256:
        raise ConfigError(f"positive_class: must be one of the label column's values as text, e.g. 'defaulted' or "
                          f"'1', got {quote(value)}")
    return str(value)


def _early_stopping(t: Section, task: str) -> EarlyStoppingSpec | None:
    """`train.early_stopping`: {patience, metric, min_delta}; absent or null: train every epoch."""
    if t.raw("early_stopping") is None:
        return None
    e = t.section("early_stopping")
    default = EarlyStoppingSpec()
    metrics = ("auto", *STOPPING_METRICS[task])
    stopping = EarlyStoppingSpec(patience=e.int("patience", default.patience, min_value=1, max_value=10000),
                                 metric=e.str("metric", default.metric, choices=metrics),
                                 min_delta=e.float("min_delta", default.min_delta, min_value=0.0, max_value=1e6))
    e.reject_unknown()
    return stopping


def _check_early_stopping(split: SplitSpec, train: TrainSpec, privacy: PrivacySpec) -> None:
    if split.validation <= 0:
        raise ConfigError("train.early_stopping: needs a validation split (split.validation > 0) to watch")
    if not train.checkpoint:
        raise ConfigError("train.early_stopping: needs train.checkpoint: true (every party goes back to the best "
                          "epoch's checkpoint when training stops)")
    if privacy.attacks or privacy.record_gradients:
        raise ConfigError("train.early_stopping: cannot be combined with privacy.attacks or "
                          "privacy.record_gradients (going back to the best epoch reopens the passive parties' "
                          "jobs, which drops the gradients they recorded)")


#: rows per evaluation / prediction batch at the active party; bounds the layout's max_batch
EVAL_BATCH_ROWS = 2048


def interactive_layout(spec: JobSpec, party: PartySpec, seed: int = 0):
    """The interactive layer's fixed-point and packing layout between the active party and passive `party`."""
    from vfl.protocol.layout import default_layout
    c = spec.crypto
    return default_layout(c.key_bits, party.bottom.out, spec.interactive_out, c.precision_bits, c.gradient_bits,
                          c.stat_security_bits, c.activation_bound, max(spec.train.max_batch_size, EVAL_BATCH_ROWS),
                          seed)


def check_layout_fits(spec: JobSpec) -> None:
    """Refuse, before any PSI runs, widths and precisions whose packed rows do not fit a ciphertext."""
    if spec.crypto.mode != "paillier":
        return
    c = spec.crypto
    for party in spec.passives:
        try:
            interactive_layout(spec, party)
        except (ValueError, VflError) as exc:
            raise ConfigError(
                f"model.bottom_overrides.{party.name}.out / model.interactive.out / crypto.precision_bits: a bottom "
                f"output of {party.bottom.out} and an interactive output of {spec.interactive_out} at precision_bits "
                f"{c.precision_bits}, gradient_bits {c.gradient_bits} do not fit a {c.key_bits}-bit ciphertext "
                f"({exc}); lower the widths or the precision, or use a larger key") from None


def spec_mapping(text: str, source: str = "job spec") -> dict[str, Any]:
    """The YAML mapping of a spec given as text, or a ConfigError naming `source`."""
    return yaml_mapping(text, source)


def parse_job_spec_yaml(text: str) -> JobSpec:
    """A spec that arrived as text (a submitted or a peer's job): the same checks as a file's."""
    return parse_job_spec(spec_mapping(text))


def load_job_spec(path: str | Path) -> JobSpec:
    path = Path(path)
    data = load_yaml(path, "job spec")
    try:
        return parse_job_spec(data)
    except ConfigError as exc:
        raise ConfigError(f"job spec {path}: {exc}") from None


def spec_to_yaml_dict(spec: JobSpec) -> dict[str, Any]:
    """The inverse of parse_job_spec (used to ship a spec to peers and to store it in the job directory)."""
    def mlp(m: MlpSpec, with_out: bool = True) -> dict[str, Any]:
        if m.module is not None:
            return {"module": m.module, "out": m.out}
        d = {"hidden": list(m.hidden), "activation": m.activation, "dropout": m.dropout}
        if with_out:
            d["out"] = m.out
        return d
    # model.bottom never names a module; parties with their own module appear in bottom_overrides
    default = next((p.bottom for p in spec.parties if p.bottom.module is None),
                   dataclasses.replace(spec.parties[0].bottom, module=None))
    return {
        "job_id": spec.job_id, "kind": spec.kind, "task": spec.task, "active": spec.active,
        "parties": {p.name: {"dataset": p.dataset} for p in spec.parties},
        "model": {"bottom": mlp(default),
                  "bottom_overrides": {p.name: mlp(p.bottom) for p in spec.parties if p.bottom != default},
                  "interactive": {"out": spec.interactive_out}, "top": mlp(spec.top, with_out=False)},
        "split": asdict(spec.split), "train": asdict(spec.train), "crypto": asdict(spec.crypto),
        "psi": asdict(spec.psi), "privacy": asdict(spec.privacy),
        **({"model_job": spec.model_job} if spec.model_job else {}),
        **({"positive_class": spec.positive_class} if spec.positive_class is not None else {}),
    }
