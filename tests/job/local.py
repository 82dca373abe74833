"""A whole job in one process: the active runtime and every passive runtime, linked in memory.

Used by tests/job to test the runtimes without nodes, sockets or certificates: the same `ActiveJob`,
`JobRegistry` and `PassiveJob` code as on a node, the same typed messages (vfl.protocol.messages) and the same
PSI protocol (psi's in-process runner), only the transport differs (vfl.protocol.link.InProcessLink).

    result = run_local_job(spec, configs)              # configs: party -> node config (datasets, jobs_dir, ...)
"""
from __future__ import annotations

import uuid
from typing import Callable, Mapping

from psi import PsiResult
from psi.protocol.session import make_hello, run_in_process
from vfl.job.events import EventLog
from vfl.job.ledger import WireLedger
from vfl.job.network import PsiProgress, psi_config
from vfl.job.registry import JobRegistry
from vfl.job.spec import JobSpec
from vfl.protocol.link import InProcessLink

#: tamper(peer, message) -> message: sees every request to and every reply from a passive party
Tamper = Callable[[str, object], object]


class LocalNode:
    """What the runtimes need of a node: its config, its datasets and models, its compute backend, and (at the active
    party) a network."""

    def __init__(self, config, network=None):
        self.config = config
        self.network = network
        self._compute = None

    @property
    def compute(self):
        if self._compute is None:
            from vfl.compute import open_compute
            self._compute = open_compute(self.config.compute, self.config.workers, self.config.party)
        return self._compute

    def dataset(self, name: str):
        return self.config.dataset(name)

    def models(self) -> dict[str, str]:
        return self.config.models


class LocalNetwork:
    """The active party's network to passive registries in this process."""

    def __init__(self, active: str, passives: Mapping[str, JobRegistry], tamper: Tamper | None = None,
                 psi_engine=None):
        self.active = active
        self.passives = dict(passives)
        self.tamper = tamper
        self.psi_engine = psi_engine  # None: one thread of this process (tests are small)

    def link(self, peer: str) -> InProcessLink:
        registry = self.passives[peer]
        tamper = (lambda message: self.tamper(peer, message)) if self.tamper else None
        return InProcessLink(peer, lambda request: registry.handle(request, self.active), tamper)

    def run_psi(self, spec: JobSpec, ids, ledger: WireLedger, progress: PsiProgress) -> PsiResult:
        from psi import Mode
        config = psi_config(spec, 0, f"{spec.job_id}.psi.{uuid.uuid4().hex[:8]}")
        names = [p.name for p in spec.passives]
        hello = make_hello(config, spec.active, names, len(ids))
        jobs = {name: self.passives[name].passive(spec.job_id, self.active) for name in names}
        id_lists = {spec.active: ids, **{name: job.claim_psi(hello, self.active) for name, job in jobs.items()}}
        results = run_in_process(id_lists, spec.active, config, engine=self.psi_engine)
        for name, job in jobs.items():
            result = results[name]
            if result.mode == Mode.CARDINALITY:
                job.on_cardinality_result(result.size)
            else:
                job.on_psi_result(result)
        return results[spec.active]


class ProgressNetwork(LocalNetwork):
    """LocalNetwork whose in-process PSI reports the active party's progress, as a node's PSI session does; the
    first report waits until `on_first_report` (if given) returned."""

    def __init__(self, *args, on_first_report=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_first_report = on_first_report
        self.reports = []

    def run_psi(self, spec, ids, ledger, progress):
        config = psi_config(spec, 0, f"{spec.job_id}.psi.1")
        names = [p.name for p in spec.passives]
        hello = make_hello(config, spec.active, names, len(ids))
        jobs = {name: self.passives[name].passive(spec.job_id, self.active) for name in names}
        id_lists = {spec.active: ids, **{name: job.claim_psi(hello, self.active) for name, job in jobs.items()}}

        def report(party, stage, done, total):
            if party != spec.active:
                return
            if not self.reports and self.on_first_report is not None:
                self.on_first_report()
            self.reports.append((stage, done, total))
            progress(stage, done, total)
        results = run_in_process(id_lists, spec.active, config, progress=report)
        for name, job in jobs.items():
            job.on_psi_result(results[name])
        return results[spec.active]


def run_local_job(spec: JobSpec, configs: Mapping[str, object], tamper: Tamper | None = None,
                  defense=None, registries: Mapping[str, JobRegistry] | None = None) -> dict:
    """Run `spec` with every party in this process; `configs` maps each party to its node config.

    `registries` lets a test keep the passive parties' registries (and so their job state) across jobs, e.g. to
    resume; by default each passive party gets a fresh one.
    """
    from vfl.job.active import ActiveJob
    from vfl.privacy.defenses import defense_for_job
    passives = dict(registries or {})
    for p in spec.passives:
        passives.setdefault(p.name, JobRegistry(LocalNode(configs[p.name])))
    node = LocalNode(configs[spec.active])
    # a Ray party's PSI runs on its cluster, as on a node; the local backend's in a thread, as these tests always did
    engine = node.compute.psi_engine() if node.compute.name != "local" else None
    network = node.network = LocalNetwork(spec.active, passives, tamper, psi_engine=engine)
    job = ActiveJob(node, spec, EventLog(spec.job_id), network,
                    defense=defense if defense is not None else defense_for_job(spec))
    return job.run()
