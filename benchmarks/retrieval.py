"""Time Tatoeba-style exact nearest-neighbour search: faiss vs the blocked torch path.

For every size N, N random unit query vectors are searched against N random
unit key vectors (numpy, seeded) for their k=1 and k=K nearest neighbours by
inner product, with ``backend="faiss"`` (``IndexFlatIP``) and with
``backend="torch"`` (query/key blocks of ``--block-size`` rows, a running top-k
and the chunk-skipping of ``xstilts.retrieval.search``), through
:func:`xstilts.retrieval.nearest_neighbors`.

    python benchmarks/retrieval.py [--sizes 10000 50000 100000] [--dim 64] [--k 4]
        [--repeats 3] [--memory] [--quick]

Measurements:

- time: both backends run in this one process, interleaved (faiss, torch,
  torch, faiss, ...: the order alternates every repetition) after a warm-up
  call, ``--repeats`` times; printed are each backend's median wall time of
  the ``nearest_neighbors`` call alone and the median and spread (min-max) of
  the per-repetition ratio torch / faiss. The goal is a median ratio of at
  most 1.15 at N=100,000;
- agreement: the percentage of queries whose k neighbour indices are
  identical, in the same order, with both backends, and of queries with the
  same nearest neighbour. Random data has no exact ties: a disagreement is a
  near-tie resolved differently by float32 rounding, which the last column
  shows (the largest score difference between the backends over the rows
  that disagree: of the order of float32 rounding, 1e-7, for a near-tie);
- ``--memory``: peak memory as the resident-set high-water mark
  (``ru_maxrss``) of a *fresh subprocess per measurement* (a high-water mark
  never goes down; tracemalloc would miss native allocations). "peak" is the
  whole process; "search +" is the growth of the high-water mark during the
  search call, what the search needed beyond the inputs.

On a machine shared with other work, two threads per library are at the
mercy of the scheduler (OpenMP and torch threads waiting for each other);
``--threads 1`` gives steadier ratios of the algorithms themselves.

The default ``--dim`` is 64, not XLM-R Large's 1024, so that the default sizes
finish in a few minutes on a 2-core machine: every measurement visits all N x N
pairs (10^10 at N=100,000), and at dim=64 the top-k selection costs about as
much as the multiply-adds, which is the case the torch path has to win. Pass
``--dim 1024`` for realistic embedding sizes (the multiply then dominates both
backends). ``--quick`` runs N=2,000 and 5,000 with 2 repetitions, a smoke test
of seconds. Without faiss only the torch numbers are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _max_rss_mib() -> float:
    """This process's resident-set high-water mark in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return peak / divisor


def _unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _worker(args: argparse.Namespace) -> None:
    """One measurement, in its own process; prints a JSON line, saves the indices."""
    from xstilts.retrieval import nearest_neighbors

    queries = _unit_vectors(args.size, args.dim, args.seed)
    keys = _unit_vectors(args.size, args.dim, args.seed + 1)
    nearest_neighbors(queries[:8], keys[:64], args.k, backend=args.backend)  # warm-up
    rss_before = _max_rss_mib()
    start = time.perf_counter()
    scores, indices = nearest_neighbors(
        queries, keys, args.k, backend=args.backend, block_size=args.block_size
    )
    seconds = time.perf_counter() - start
    rss_peak = _max_rss_mib()
    np.savez(args.out, scores=scores, indices=indices)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": rss_peak,
                "search_mib": max(0.0, rss_peak - rss_before),
            }
        )
    )


def _measure(size: int, k: int, backend: str, args: argparse.Namespace, out: Path) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--size", str(size),
        "--dim", str(args.dim),
        "--k", str(k),
        "--backend", backend,
        "--block-size", str(args.block_size),
        "--seed", str(args.seed),
        *(["--threads", str(args.threads)] if args.threads else []),
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {backend} N={size} k={k} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def _environment() -> str:
    import torch

    try:
        import faiss

        faiss_version = getattr(faiss, "__version__", "unknown version")
    except ImportError:
        faiss_version = "not installed"
    return (
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), faiss {faiss_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )


def _timed(queries: np.ndarray, keys: np.ndarray, k: int, backend: str, block: int):
    from xstilts.retrieval import nearest_neighbors

    start = time.perf_counter()
    scores, indices = nearest_neighbors(queries, keys, k, backend=backend, block_size=block)
    return time.perf_counter() - start, scores, indices


def _time_interleaved(size: int, k: int, backends: list[str], args: argparse.Namespace) -> dict:
    """Per-backend times over ``args.repeats`` interleaved repetitions, and the results."""
    from xstilts.retrieval import nearest_neighbors

    queries = _unit_vectors(size, args.dim, args.seed)
    keys = _unit_vectors(size, args.dim, args.seed + 1)
    for backend in backends:  # warm-up: thread pools, BLAS, faiss import
        nearest_neighbors(queries[:64], keys[:256], k, backend=backend)
    times: dict[str, list[float]] = {b: [] for b in backends}
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for repeat in range(args.repeats):
        for backend in backends if repeat % 2 == 0 else backends[::-1]:
            seconds, scores, indices = _timed(queries, keys, k, backend, args.block_size)
            times[backend].append(seconds)
            results[backend] = (scores, indices)
    return {"times": times, "results": results}


def _agreement(results: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    (f_scores, f_indices), (t_scores, t_indices) = results["faiss"], results["torch"]
    same = np.all(f_indices == t_indices, axis=1)
    same_top1 = (f_indices[:, 0] == t_indices[:, 0]).mean() * 100
    # Where the lists differ, how far apart were the scores? (near-ties)
    gap = float(np.abs(f_scores[~same] - t_scores[~same]).max(initial=0.0))
    return same.mean() * 100, same_top1, gap


def _print_memory(sizes: list[int], ks: list[int], backends: list[str], args) -> None:
    header = f"{'N':>8} {'k':>3} {'backend':>8} {'peak MiB':>9} {'search +MiB':>11}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for k in ks:
                for backend in backends:
                    r = _measure(size, k, backend, args, Path(tmp) / f"{backend}.npz")
                    print(
                        f"{size:>8} {k:>3} {backend:>8} {r['peak_mib']:>9.0f} "
                        f"{r['search_mib']:>11.0f}",
                        flush=True,
                    )


def main(argv: list[str] | None = None) -> None:
    from xstilts.retrieval.search import DEFAULT_BLOCK_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--dim", type=int, default=64, help="vector size (default 64)")
    parser.add_argument("--k", type=int, default=4, help="largest k; k=1 is always timed too")
    parser.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--memory", action="store_true", help="also peak RSS, fresh processes")
    parser.add_argument("--quick", action="store_true", help="N=2,000 and 5,000, 2 repeats")
    parser.add_argument(
        "--threads", type=int, help="torch and faiss (OpenMP) threads; default: their own"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        _set_threads(args.threads)
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.sizes, args.repeats = [2_000, 5_000], 2

    from xstilts.retrieval import faiss_available

    backends = ["faiss", "torch"] if faiss_available() else ["torch"]
    ks = sorted({1, args.k})
    print(f"exact inner-product k-NN, N queries x N keys, dim={args.dim}, seed={args.seed}")
    print(_environment())
    print(f"torch block size {args.block_size}; {args.repeats} interleaved repetitions")
    if "faiss" not in backends:
        print("faiss is not installed (pip install faiss-cpu): measuring the torch path only")
    print()
    header = (
        f"{'N':>8} {'k':>3} "
        + " ".join(f"{b + ' s':>9}" for b in backends)
        + (f" {'torch/faiss':>11} {'spread':>11} {'same k-NN %':>11} {'same top-1 %':>12}"
           f" {'max diff':>9}" if len(backends) == 2 else "")
    )  # fmt: skip
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for k in ks:
            run = _time_interleaved(size, k, backends, args)
            times = run["times"]
            line = f"{size:>8} {k:>3} " + " ".join(
                f"{statistics.median(times[b]):>9.2f}" for b in backends
            )
            if len(backends) == 2:
                ratios = [t / f for t, f in zip(times["torch"], times["faiss"], strict=True)]
                same_rows, same_top1, gap = _agreement(run["results"])
                spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
                line += (
                    f" {statistics.median(ratios):>11.2f} {spread:>11} {same_rows:>11.3f}"
                    f" {same_top1:>12.3f} {gap:>9.1e}"
                )
            print(line, flush=True)
    if args.memory:
        print()
        _print_memory(args.sizes, ks, backends, args)


if __name__ == "__main__":
    main()
