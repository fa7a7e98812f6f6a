"""Cluster executors: jobs of a grid plan as Ray tasks, or as Slurm jobs via submitit.

Both follow ``LocalExecutor``'s contract (see ``executors``): jobs arrive in
dependency order, each is reported through ``on_done`` as it ends, a failure does
not stop the others, and a job whose dependency failed is skipped (and reported).
``ray`` and ``submitit`` are optional (the ``cluster`` extra) and imported lazily.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from xstilts.experiment.executors import (
    Job,
    JobResult,
    OnDone,
    _failed_dependency,
    _ready,
    run_job,
    skipped,
)

log = logging.getLogger(__name__)

FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "XSTILTS_CACHE_DIR",
    "TOKENIZERS_PARALLELISM",
    "OMP_NUM_THREADS",
)
"""Driver environment variables handed on to the workers (when set)."""


def _check_plan(jobs: list[Job]) -> None:
    seen: set[str] = set()
    for job in jobs:
        missing = [dep for dep in job.depends_on if dep not in seen]
        if missing:
            raise RuntimeError(
                f"job {job.name} depends on {', '.join(missing)}, which is not earlier in the plan"
            )
        seen.add(job.name)


def _forwarded_env() -> dict[str, str]:
    return {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}


# ---------------------------------------------------------------------------- Ray


def run_after(job: Job, out_root: Path, *dependencies: JobResult) -> JobResult:
    """A Ray task's body: skip ``job`` if a dependency failed, else run it (through
    torchrun on the task's GPUs when it has several). Never raises."""
    failed = next((dep.name for dep in dependencies if not dep.ok), None)
    if failed:
        return skipped(job, failed)
    return run_job(job, out_root)


class RayExecutor:
    """Each job is a Ray task placed by Ray; dependencies are passed as ObjectRefs.

    ``address`` connects to an existing cluster (``"auto"``, ``"ray://host:10001"``);
    ``None`` starts a local instance with ``num_cpus`` CPUs (all of them when None).
    Ray is shut down at the end only if this executor started it.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def run(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        import ray

        _check_plan(jobs)
        started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "runtime_env": {"env_vars": _forwarded_env()},
                "include_dashboard": False,
                "log_to_driver": True,
            }
            if self.address is None:
                ray.init(num_cpus=self.num_cpus, **options)
            else:
                ray.init(address=self.address, **options)
            started = True
        try:
            return self._run(ray, jobs, out_root, on_done)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        task = ray.remote(run_after)
        refs: dict[str, Any] = {}
        pending: dict[Any, Job] = {}
        for job in jobs:
            ref = task.options(
                num_cpus=job.cpus, num_gpus=job.gpus, max_retries=0, name=job.name
            ).remote(job, out_root, *(refs[dep] for dep in job.depends_on))
            refs[job.name] = ref
            pending[ref] = job
        done: dict[str, JobResult] = {}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                job = pending.pop(ref)
                done[job.name] = self._result(ray, ref, job, done)
                on_done(done[job.name])
        return [done[job.name] for job in jobs]

    @staticmethod
    def _result(ray: Any, ref: Any, job: Job, done: dict[str, JobResult]) -> JobResult:
        try:
            return ray.get(ref)
        except Exception as err:  # a crashed worker or a lost node, not the job itself
            failed = next((dep for dep in job.depends_on if dep in done and not done[dep].ok), None)
            if failed:  # Ray propagates a dependency's error to its dependents
                return skipped(job, failed)
            detail = f"ray task failed: {type(err).__name__}: {err}".strip()
            log.error("%s failed: %s", job.name, detail)
            return JobResult(job.name, False, job.log_path, error=detail)


# -------------------------------------------------------------------------- Slurm


class SlurmExecutor:
    """Each job is a Slurm job submitted through submitit, once its dependencies ended.

    ``cluster`` is submitit's: None picks Slurm when available, ``"local"`` runs the
    jobs in subprocesses of this machine (for tests), ``"debug"`` in this process.
    Every job asks for the same resources (``gpus_per_node``, ``cpus_per_task``), or
    for its own GPUs where it has more (``resources.gpus``): one task of that many
    GPUs, in which torchrun starts a process per GPU.
    """

    def __init__(
        self,
        folder: Path,
        partition: str | None,
        time_minutes: int,
        gpus_per_node: int,
        cpus_per_task: int,
        cluster: str | None = None,
        poll_seconds: float = 10.0,
    ) -> None:
        self.folder = Path(folder)
        self.partition = partition
        self.time_minutes = time_minutes
        self.gpus_per_node = gpus_per_node
        self.cpus_per_task = cpus_per_task
        self.cluster = cluster
        self.poll_seconds = poll_seconds

    def _executor(self) -> Any:
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        parameters: dict[str, Any] = {
            "timeout_min": self.time_minutes,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_task": self.cpus_per_task,
        }
        if executor.cluster == "slurm" and self.partition:
            parameters["slurm_partition"] = self.partition
        executor.update_parameters(**parameters)
        return executor

    def job_parameters(self, job: Job) -> dict[str, Any]:
        """submitit's parameters of one job: its name, and enough GPUs for it in one
        task (torchrun starts a process per GPU in it)."""
        gpus = max(self.gpus_per_node, job.gpus)
        return {"name": job.name, "gpus_per_node": gpus, "tasks_per_node": 1}

    def run(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        _check_plan(jobs)
        executor = self._executor()
        done: dict[str, JobResult] = {}
        waiting = list(jobs)
        running: dict[str, tuple[Job, Any]] = {}
        while waiting or running:
            for job in _ready(waiting, done):  # the next wave
                waiting.remove(job)
                failed = _failed_dependency(job, done)
                if failed:
                    done[job.name] = skipped(job, failed)
                    on_done(done[job.name])
                    continue
                executor.update_parameters(**self.job_parameters(job))
                try:
                    handle = executor.submit(run_job, job, out_root)
                except Exception as err:  # sbatch refused it
                    done[job.name] = _failed(job, f"submission failed: {err}")
                    on_done(done[job.name])
                    continue
                log.info("%s submitted as %s", job.name, handle.job_id)
                running[job.name] = (job, handle)
            if not running:
                continue  # skipped jobs may have made others ready
            finished = [name for name, (_, handle) in running.items() if handle.done()]
            if not finished:
                time.sleep(self.poll_seconds)
                continue
            for name in finished:
                job, handle = running.pop(name)
                done[name] = _collect(job, handle)
                on_done(done[name])
        return [done[job.name] for job in jobs]


def _collect(job: Job, handle: Any) -> JobResult:
    try:
        return handle.result()
    except Exception as err:  # the job died: timeout, preemption, out of memory
        logs = f"{handle.paths.stderr} / {handle.paths.stdout}"
        return _failed(job, f"submitit job {handle.job_id} failed: {err} (log: {logs})")


def _failed(job: Job, detail: str) -> JobResult:
    log.error("%s failed: %s", job.name, detail)
    return JobResult(job.name, False, job.log_path, error=detail)
