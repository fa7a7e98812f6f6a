"""Ray and Slurm (submitit) executors on a tiny grid of demo-data jobs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from xstilts.experiment.executors import Job, JobResult

ray = pytest.importorskip("ray")
submitit = pytest.importorskip("submitit")

from xstilts.experiment.cluster import RayExecutor, SlurmExecutor  # noqa: E402

GOOD = ("inter", "target-lr1", "target-lr2")


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def grid_jobs(tiny_config, tmp_path: Path) -> list[Job]:
    """An intermediate job, two target runs from it, a broken job and its dependent."""

    def config_yaml(learning_rate: float) -> str:
        training = {
            "learning_rate": learning_rate,
            "batch_size": 16,
            "epochs": 1,
            "max_train_examples": 64,
            "max_eval_examples": 32,
            "eval_every_steps": 4,
        }
        return tiny_config(
            intermediate=True,
            target__training=training,
            intermediate__training=dict(training, learning_rate=1e-3),
            evaluation__languages=["en", "de"],
            evaluation__max_examples=30,
        ).to_yaml()

    broken = yaml.safe_load(config_yaml(1e-3))
    broken.pop("intermediate")
    broken["target"]["task"] = "no_such_task"
    logs = tmp_path / "logs"

    def job(name: str, kind: str, text: str, *depends_on: str) -> Job:
        return Job(name, kind, text, logs / f"{name}.log", depends_on=depends_on)  # type: ignore[arg-type]

    return [
        job("inter", "intermediate", config_yaml(1e-3)),
        job("target-lr1", "target", config_yaml(1e-3), "inter"),
        job("target-lr2", "target", config_yaml(2e-3), "inter"),
        job("broken", "target", yaml.safe_dump(broken)),
        job("after-broken", "target", config_yaml(1e-3), "broken"),
    ]


def _check(jobs: list[Job], results: list[JobResult], reported: list[JobResult], out: Path):
    assert [result.name for result in results] == [job.name for job in jobs]
    assert sorted(result.name for result in reported) == sorted(job.name for job in jobs)
    by_name = {result.name: result for result in results}
    for name in GOOD:
        assert by_name[name].ok, by_name[name].error
    for name in ("target-lr1", "target-lr2"):
        assert by_name[name].results
    run_results = sorted((out / "runs").glob("*/results.json"))
    assert len(run_results) == 2
    lrs = set()
    for path in run_results:
        assert json.loads(path.read_text())
        config = yaml.safe_load((path.parent / "config.yaml").read_text())
        lrs.add(config["target"]["training"]["learning_rate"])
    assert lrs == {1e-3, 2e-3}
    assert len(list((out / "intermediate").iterdir())) == 1  # shared by both targets
    assert not by_name["broken"].ok
    assert "no_such_task" in by_name["broken"].error
    assert not by_name["after-broken"].ok
    assert by_name["after-broken"].error == "skipped: broken failed"


@pytest.mark.usefixtures("worker_env")
def test_ray_executor_runs_a_grid(grid_jobs: list[Job], tmp_path: Path) -> None:
    if ray.is_initialized():
        ray.shutdown()
    out = tmp_path / "out"
    reported: list[JobResult] = []
    start = time.monotonic()
    results = RayExecutor(num_cpus=2).run(grid_jobs, out, reported.append)
    print(f"ray grid: {time.monotonic() - start:.1f}s")
    _check(grid_jobs, results, reported, out)
    assert not ray.is_initialized()  # it started Ray, so it shut it down


@pytest.mark.usefixtures("worker_env")
def test_slurm_executor_runs_a_grid_locally(grid_jobs: list[Job], tmp_path: Path) -> None:
    out = tmp_path / "out"
    reported: list[JobResult] = []
    executor = SlurmExecutor(
        tmp_path / "submitit",
        partition=None,
        time_minutes=5,
        gpus_per_node=0,
        cpus_per_task=1,
        cluster="local",
        poll_seconds=0.2,
    )
    start = time.monotonic()
    results = executor.run(grid_jobs, out, reported.append)
    print(f"submitit grid: {time.monotonic() - start:.1f}s")
    _check(grid_jobs, results, reported, out)
    assert list((tmp_path / "submitit").glob("*_log.err"))


def test_a_dead_submitit_job_is_a_failed_result(tmp_path: Path) -> None:
    """A job that dies outside execute_job (timeout, OOM) is reported with its log."""
    from types import SimpleNamespace

    from xstilts.experiment.cluster import _collect

    def result() -> JobResult:
        raise submitit.core.utils.UncompletedJobError("job 42 timed out")

    handle = SimpleNamespace(
        job_id="42",
        result=result,
        paths=SimpleNamespace(stderr=tmp_path / "42_log.err", stdout=tmp_path / "42_log.out"),
    )
    job = Job("dead", "target", "{}", tmp_path / "dead.log")
    outcome = _collect(job, handle)
    assert not outcome.ok
    assert "timed out" in outcome.error
    assert "42_log.err" in outcome.error


def test_executors_reject_unknown_dependencies(tmp_path: Path) -> None:
    job = Job("orphan", "target", "{}", tmp_path / "o.log", depends_on=("missing",))
    with pytest.raises(RuntimeError, match="missing"):
        RayExecutor(num_cpus=1).run([job], tmp_path, lambda result: None)
    with pytest.raises(RuntimeError, match="missing"):
        SlurmExecutor(tmp_path, None, 1, 0, 1, cluster="local").run(
            [job], tmp_path, lambda result: None
        )


# -- jobs on several GPUs: torchrun, one process per GPU -------------------------------


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands run_job starts; each 'run' writes the result its main process
    would write (a finished job)."""
    from xstilts.experiment import executors

    commands: list[list[str]] = []

    def fake_run(command: list[str], check: bool) -> subprocess.CompletedProcess:
        commands.append(command)
        job_file = Path(command[-2])
        job = executors._read(Job, job_file)
        done = JobResult(job.name, True, job.log_path, results={"average": 1.0})
        executors.atomic_write_json(executors._result_file(job_file), executors._payload(done))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(executors.subprocess, "run", fake_run)
    return commands


def _torchrun(command: list[str], gpus: int, out: Path) -> None:
    assert command[1:6] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={gpus}",
        "-m",
    ]
    assert command[6:] == ["xstilts.experiment.executors", str(out / "jobs" / "t.json"), str(out)]


def test_a_job_on_several_gpus_runs_through_torchrun(tmp_path: Path, launched) -> None:
    from xstilts.experiment.executors import run_job

    job = Job("t", "target", "{}", tmp_path / "t.log", gpus=4)
    result = run_job(job, tmp_path)
    assert len(launched) == 1
    _torchrun(launched[0], 4, tmp_path)
    assert result == JobResult("t", True, tmp_path / "t.log", results={"average": 1.0})


def test_a_job_on_one_gpu_runs_in_this_process(tmp_path: Path, launched, monkeypatch) -> None:
    from xstilts.experiment import executors

    ran: list[Job] = []

    def execute(job: Job, out: Path) -> JobResult:
        ran.append(job)
        return JobResult(job.name, True, job.log_path)

    monkeypatch.setattr(executors, "execute_job", execute)
    for gpus in (0, 1):
        executors.run_job(Job("t", "target", "{}", tmp_path / "t.log", gpus=gpus), tmp_path)
    assert launched == [] and len(ran) == 2


def test_a_torchrun_that_dies_is_a_failed_job(tmp_path: Path, monkeypatch) -> None:
    from xstilts.experiment import executors

    monkeypatch.setattr(
        executors.subprocess, "run", lambda command, check: subprocess.CompletedProcess(command, -9)
    )
    result = executors.run_job(Job("t", "target", "{}", tmp_path / "t.log", gpus=2), tmp_path)
    assert not result.ok
    assert "exit -9" in result.error


def test_each_torchrun_process_runs_the_job_and_the_main_one_reports(tmp_path, monkeypatch) -> None:
    from xstilts.experiment import executors

    job = Job("t", "intermediate", "seed: 1\n", tmp_path / "t.log", depends_on=("a",), gpus=2)
    job_file = tmp_path / "t.json"
    executors.atomic_write_json(job_file, executors._payload(job))
    received: list[Job] = []

    def execute(given: Job, out: Path) -> JobResult:
        received.append(given)
        return JobResult(given.name, False, given.log_path, error="boom")

    monkeypatch.setattr(executors, "execute_job", execute)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert executors._launched([str(job_file), str(tmp_path)]) == 1
    assert not (tmp_path / "t.result.json").exists()  # rank 1 writes nothing
    monkeypatch.setenv("RANK", "0")
    assert executors._launched([str(job_file), str(tmp_path)]) == 1
    assert received == [job, job]
    reported = executors._read(JobResult, tmp_path / "t.result.json")
    assert reported == JobResult("t", False, tmp_path / "t.log", error="boom")


def test_a_ray_task_with_several_gpus_launches_torchrun(tmp_path: Path, launched) -> None:
    from xstilts.experiment.cluster import run_after

    job = Job("t", "target", "{}", tmp_path / "t.log", depends_on=("i",), gpus=2)
    dependency = JobResult("i", True, tmp_path / "i.log")
    assert run_after(job, tmp_path, dependency).ok
    _torchrun(launched[0], 2, tmp_path)


def test_the_slurm_script_asks_for_the_jobs_gpus_in_one_task(tmp_path, monkeypatch) -> None:
    """torchrun starts the processes, so Slurm gives one task all the job's GPUs."""
    srun = tmp_path / "bin" / "srun"  # submitit's Slurm executor looks for srun
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{os.environ['PATH']}")
    executor = SlurmExecutor(tmp_path / "slurm", "gpu", 60, 1, 8, cluster="slurm")

    def script(gpus: int) -> str:
        submitit_executor = executor._executor()
        job = Job("t", "target", "{}", tmp_path / "t.log", gpus=gpus)
        submitit_executor.update_parameters(**executor.job_parameters(job))
        return submitit_executor._executor._make_submission_file_text("CMD", "uid")

    four = script(4)
    assert "#SBATCH --gpus-per-node=4" in four
    assert "#SBATCH --ntasks-per-node=1" in four
    assert "#SBATCH --partition=gpu" in four
    assert "#SBATCH --job-name=t" in four
    assert "#SBATCH --gpus-per-node=1" in script(0)  # the executor's own setting
