"""Executors run the jobs of a grid plan: here, in worker processes, on Ray, on Slurm.

A job is one phase-level unit of a grid: an intermediate training run, or a
target run (target training + evaluation) that may depend on one. Jobs are
given in dependency order. A job never raises: ``execute_job`` catches
everything and reports it, so one failure does not stop the others; a job whose
dependency failed is skipped and reported as such.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import yaml

from xstilts.io import atomic_write_json
from xstilts.processes import is_main, world_size

log = logging.getLogger(__name__)

JobKind = Literal["language_adapter", "intermediate", "target"]


@dataclass(frozen=True)
class Job:
    name: str
    """The run's folder name (unique in the grid)."""
    kind: JobKind
    config_yaml: str
    """The experiment's config as YAML text: picklable and self-contained."""
    log_path: Path
    depends_on: tuple[str, ...] = ()
    cpus: int = 1
    gpus: int = 0


@dataclass
class JobResult:
    name: str
    ok: bool
    log_path: Path
    error: str | None = None
    results: dict = field(default_factory=dict)
    """A target run's results.json content."""


OnDone = Callable[[JobResult], None]


def execute_job(job: Job, out_root: Path) -> JobResult:
    """Run one job in this process. Never raises."""
    from xstilts.config import parse_config
    from xstilts.experiment.pipeline import (
        run_experiment,
        run_intermediate_phase,
        run_language_adapter_phase,
    )

    try:
        config = parse_config(yaml.safe_load(job.config_yaml), source=job.name)
        if job.kind == "language_adapter":
            run_language_adapter_phase(config, out_root, job.name)
            return JobResult(job.name, True, job.log_path)
        if job.kind == "intermediate":
            run_intermediate_phase(config, out_root)
            return JobResult(job.name, True, job.log_path)
        outcome = run_experiment(config, out_root)
        return JobResult(job.name, True, job.log_path, results=outcome.results)
    except BaseException as err:  # a failed run is reported, the grid goes on
        if isinstance(err, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        log.error("%s failed: %s (log: %s)", job.name, detail, job.log_path)
        _append_traceback(job.log_path)
        return JobResult(job.name, False, job.log_path, error=detail)


# -- a job on several GPUs: one torchrun process per GPU ------------------------------

JOBS_DIR = "jobs"
"""Under a grid's output folder: the job and result files of jobs run through torchrun."""


def run_job(job: Job, out_root: Path) -> JobResult:
    """Run one job: in this process, or with ``job.gpus`` > 1 through ``launch_command``
    (one process per GPU, the pipeline sharing the work among them), reading back the
    result its main process writes. Never raises."""
    if job.gpus <= 1 or world_size() > 1:  # already one of several processes
        return execute_job(job, out_root)
    folder = out_root / JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    job_file = folder / f"{job.name}.json"
    result_file = _result_file(job_file)
    result_file.unlink(missing_ok=True)
    atomic_write_json(job_file, _payload(job))
    command = launch_command(job_file, out_root, job.gpus)
    log.info("%s: %s", job.name, " ".join(command))
    done = subprocess.run(command, check=False)
    if result_file.is_file():
        return _read(JobResult, result_file)
    error = f"torchrun ended with exit {done.returncode} before the job's result was written"
    log.error("%s failed: %s (log: %s)", job.name, error, job.log_path)
    return JobResult(job.name, False, job.log_path, error=error)


def launch_command(job_file: Path, out_root: Path, gpus: int) -> list[str]:
    """torchrun with one process per GPU of this node, each running the job in
    ``job_file`` (``python -m xstilts.experiment.executors``)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # its own rendezvous on a free port: jobs may share a node
        f"--nproc_per_node={gpus}",
        "-m",
        "xstilts.experiment.executors",
        str(job_file),
        str(out_root),
    ]


Stored = TypeVar("Stored", Job, JobResult)


def _result_file(job_file: Path) -> Path:
    return job_file.with_name(f"{job_file.stem}.result.json")


def _payload(item: Job | JobResult) -> dict[str, object]:
    payload = dataclasses.asdict(item)
    payload["log_path"] = str(item.log_path)
    if isinstance(item, Job):
        payload["depends_on"] = list(item.depends_on)
    return payload


def _read(kind: type[Stored], path: Path) -> Stored:
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["log_path"] = Path(payload["log_path"])
    if "depends_on" in payload:
        payload["depends_on"] = tuple(payload["depends_on"])
    return kind(**payload)


def _launched(argv: list[str]) -> int:
    """One of torchrun's processes: run the job; the main process writes its result."""
    job_file, out_root = Path(argv[0]), Path(argv[1])
    result = execute_job(_read(Job, job_file), out_root)
    if is_main():
        atomic_write_json(_result_file(job_file), _payload(result))
    return 0 if result.ok else 1


def _append_traceback(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(traceback.format_exc())


def skipped(job: Job, failed: str) -> JobResult:
    return JobResult(job.name, False, job.log_path, error=f"skipped: {failed} failed")


class Executor(Protocol):
    def run(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        """Run ``jobs`` (in dependency order) and report each as it ends."""


class LocalExecutor:
    """This machine: one job at a time in this process, or N worker processes."""

    def __init__(self, max_parallel: int = 1) -> None:
        self.max_parallel = max_parallel

    def run(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        if self.max_parallel <= 1:
            return self._sequential(jobs, out_root, on_done)
        return self._parallel(jobs, out_root, on_done)

    def _sequential(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        done: dict[str, JobResult] = {}
        for job in jobs:
            failed = _failed_dependency(job, done)
            result = skipped(job, failed) if failed else run_job(job, out_root)
            done[job.name] = result
            on_done(result)
        return [done[job.name] for job in jobs]

    def _parallel(self, jobs: list[Job], out_root: Path, on_done: OnDone) -> list[JobResult]:
        """One worker process per job, at most ``max_parallel`` at once. A worker that
        dies (the OOM killer, a segfault) fails its own job; the others go on."""
        done: dict[str, JobResult] = {}
        waiting = list(jobs)
        running: dict[Job, tuple[BaseProcess, Connection]] = {}
        # spawn, not fork: torch and tokenizers do not survive a fork with threads
        context = get_context("spawn")
        try:
            self._schedule(waiting, running, done, context, out_root, on_done)
        finally:  # interrupted: stop the workers rather than leave them training
            for worker, receiver in running.values():
                worker.terminate()
                worker.join()
                receiver.close()
        return [done[job.name] for job in jobs]

    def _schedule(
        self,
        waiting: list[Job],
        running: dict[Job, tuple[BaseProcess, Connection]],
        done: dict[str, JobResult],
        context: BaseContext,
        out_root: Path,
        on_done: OnDone,
    ) -> None:
        while waiting or running:
            for job in _ready(waiting, done):
                if len(running) >= self.max_parallel:
                    break
                waiting.remove(job)
                failed = _failed_dependency(job, done)
                if failed:
                    done[job.name] = skipped(job, failed)
                    on_done(done[job.name])
                    continue
                receiver, sender = context.Pipe(duplex=False)
                worker = context.Process(target=_work, args=(job, out_root, sender))
                worker.start()
                sender.close()
                running[job] = (worker, receiver)
            if not running:
                if waiting and not _ready(waiting, done):
                    names = ", ".join(job.name for job in waiting)
                    raise RuntimeError(f"jobs wait on dependencies outside the plan: {names}")
                continue
            ready = connection_wait([receiver for _, receiver in running.values()])
            for job in [j for j, (_, receiver) in running.items() if receiver in ready]:
                worker, receiver = running.pop(job)
                done[job.name] = _collect(job, worker, receiver)
                on_done(done[job.name])


def _work(job: Job, out_root: Path, sender: Connection) -> None:
    sender.send(run_job(job, out_root))
    sender.close()


def _collect(job: Job, worker: BaseProcess, receiver: Connection) -> JobResult:
    """The job's result, or a failure naming how its worker died."""
    try:
        result = receiver.recv()
    except EOFError:  # the worker ended without sending: it was killed or crashed
        worker.join()
        code = worker.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
        error = f"the worker process died ({how}) before the run ended"
        log.error("%s failed: %s (log: %s)", job.name, error, job.log_path)
        result = JobResult(job.name, False, job.log_path, error=error)
    finally:
        receiver.close()
    worker.join()
    return result


def _ready(waiting: Iterable[Job], done: dict[str, JobResult]) -> list[Job]:
    return [job for job in waiting if all(dep in done for dep in job.depends_on)]


def _failed_dependency(job: Job, done: dict[str, JobResult]) -> str | None:
    return next((dep for dep in job.depends_on if not done[dep].ok), None)


if __name__ == "__main__":
    sys.exit(_launched(sys.argv[1:]))
