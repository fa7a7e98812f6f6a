"""Batch streams, the task sampler, checkpoints and atomic folder writes."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from xstilts.errors import XstiltsError
from xstilts.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    published_once,
    read_json,
    settled_dir,
)
from xstilts.train.batches import BatchStream, StreamPosition, micro_batch_size
from xstilts.train.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from xstilts.train.sampling import TaskSampler

# ---------------------------------------------------------------------------
# BatchStream


def take(stream: BatchStream, count: int) -> list[list[int]]:
    return [stream.next_indices() for _ in range(count)]


@pytest.mark.parametrize(("num_examples", "batch_size"), [(23, 5), (20, 4), (3, 8), (1, 1)])
def test_each_epoch_covers_every_example_once(num_examples: int, batch_size: int) -> None:
    stream = BatchStream(num_examples, batch_size, seed=11)
    per_epoch = stream.batches_per_epoch
    assert per_epoch == math.ceil(num_examples / batch_size)
    orders = []
    for epoch in range(3):
        batches = take(stream, per_epoch)
        assert stream.position == StreamPosition(epoch, per_epoch)
        assert all(0 < len(b) <= batch_size for b in batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(num_examples))
        orders.append(flat)
    if num_examples > 5:
        assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch


def test_stream_is_deterministic_by_seed() -> None:
    first = take(BatchStream(50, 7, seed=3), 20)
    assert first == take(BatchStream(50, 7, seed=3), 20)
    assert first != take(BatchStream(50, 7, seed=4), 20)
    as_list = take(BatchStream(50, 7, seed=[3, 1]), 20)
    assert as_list == take(BatchStream(50, 7, seed=[3, 1]), 20)
    assert as_list != first


@pytest.mark.parametrize("stop_after", [0, 3, 4, 5, 11])
def test_resuming_from_a_position_continues_the_same_sequence(stop_after: int) -> None:
    # 30 examples, batches of 8: 4 batches an epoch, so 4 stops exactly at an epoch's end.
    uninterrupted = take(BatchStream(30, 8, seed=5), 20)
    stream = BatchStream(30, 8, seed=5)
    before = take(stream, stop_after)
    saved = dataclasses.asdict(stream.position)  # what a checkpoint stores
    resumed = BatchStream(30, 8, seed=5, position=StreamPosition(**saved))
    assert before + take(resumed, 20 - stop_after) == uninterrupted


def test_two_ranks_get_disjoint_shards_of_the_global_batch() -> None:
    num_examples, batch_size, world = 22, 6, 2
    ranks = [
        BatchStream(num_examples, batch_size, seed=9, rank=r, world_size=world)
        for r in range(world)
    ]
    single = BatchStream(num_examples, batch_size, seed=9)
    assert ranks[0].batches_per_epoch == single.batches_per_epoch == 4
    for _epoch in range(2):
        seen: list[int] = []
        for _ in range(ranks[0].batches_per_epoch):
            shard0, shard1 = (r.next_indices() for r in ranks)
            assert shard0 and shard1
            assert not set(shard0) & set(shard1)
            assert sorted(shard0 + shard1) == sorted(single.next_indices())
            assert len(shard0) <= batch_size // world and len(shard1) <= batch_size // world
            seen += shard0 + shard1
        assert sorted(seen) == list(range(num_examples))


def test_every_rank_gets_an_example_from_a_short_last_batch() -> None:
    # 7 examples, batches of 6: the last batch holds one example.
    ranks = [BatchStream(7, 6, seed=1, rank=r, world_size=2) for r in range(2)]
    take(ranks[0], 1), take(ranks[1], 1)
    last = [r.next_indices() for r in ranks]
    assert all(len(shard) == 1 for shard in last)


@pytest.mark.parametrize(("world", "micro"), [(1, 1), (1, 4), (2, 1), (2, 2), (4, 2)])
def test_a_step_trains_the_same_examples_on_any_number_of_processes(world, micro) -> None:
    """batch_size is examples per step: N processes x M micro-batches share each step's
    batch in equal parts, in the order one process would take them."""
    lengths = _lengths(75, seed=3)
    single = BatchStream(75, 16, seed=4, lengths=lengths)
    ranks = [
        BatchStream(75, 16, seed=4, rank=r, world_size=world, micro_batches=micro, lengths=lengths)
        for r in range(world)
    ]
    assert ranks[0].batches_per_epoch == single.batches_per_epoch == 5
    assert ranks[0].micro_batch_size == 16 // (world * micro)
    for _ in range(single.batches_per_epoch * 2):
        steps = [r.next_step() for r in ranks]
        assert all(len(step) == micro for step in steps)
        # micro-batch m of rank r is part m * world + r of the step's batch
        parts = [steps[r][m] for m in range(micro) for r in range(world)]
        whole = single.next_indices()
        if len(whole) == 16:
            assert [i for part in parts for i in part] == whole
            assert all(len(part) == 16 // (world * micro) for part in parts)
        else:  # the short last batch (75 = 4 x 16 + 11): every part gets an example
            assert set(whole) <= {i for part in parts for i in part}
            assert all(part for part in parts)


def test_a_batch_that_does_not_split_is_refused() -> None:
    with pytest.raises(ValueError, match="does not split into 2 micro-batches on each of 3"):
        BatchStream(50, 16, seed=0, world_size=3, micro_batches=2)
    assert micro_batch_size("target.training", 32, 2, 4) == 4
    with pytest.raises(XstiltsError) as error:
        micro_batch_size("target.training", 16, 2, 3)
    message = str(error.value)
    assert message.startswith("target.training: batch_size 16 (examples per optimizer step)")
    assert "3 processes x 2 gradient_accumulation_steps" in message
    assert "a multiple of 6 (12 or 18)" in message


def test_stream_needs_examples() -> None:
    with pytest.raises(ValueError):
        BatchStream(0, 4, seed=0)
    with pytest.raises(ValueError, match="3 lengths for 4 examples"):
        BatchStream(4, 2, seed=0, lengths=np.array([1, 2, 3]))


def _lengths(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 200, size=count)


def _padded_tokens(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def test_length_grouped_batches_pad_little_and_cover_every_example_once() -> None:
    lengths = _lengths(1000)
    grouped = BatchStream(1000, 16, seed=2, lengths=lengths)
    randomly = BatchStream(1000, 16, seed=2)
    orders = []
    for _epoch in range(2):
        batches = take(grouped, grouped.batches_per_epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        assert all(0 < len(b) <= 16 for b in batches)
        assert max(lengths[batches[0]]) == lengths.max()  # the longest batch first
        real = int(lengths.sum())
        random_padding = _padded_tokens(take(randomly, randomly.batches_per_epoch), lengths)
        assert _padded_tokens(batches, lengths) < 1.1 * real < random_padding
        orders.append(flat)
    assert orders[0] != orders[1]  # reshuffled every epoch
    assert take(BatchStream(1000, 16, seed=2, lengths=lengths), 5) != take(
        BatchStream(1000, 16, seed=3, lengths=lengths), 5
    )


@pytest.mark.parametrize("stop_after", [0, 3, 7, 8, 13])
def test_a_length_grouped_stream_resumes_exactly(stop_after: int) -> None:
    lengths = _lengths(60, seed=4)  # batches of 8: 8 batches an epoch, the last short
    uninterrupted = take(BatchStream(60, 8, seed=5, lengths=lengths), 20)
    stream = BatchStream(60, 8, seed=5, lengths=lengths)
    before = take(stream, stop_after)
    saved = dataclasses.asdict(stream.position)
    resumed = BatchStream(60, 8, seed=5, lengths=lengths, position=StreamPosition(**saved))
    assert before + take(resumed, 20 - stop_after) == uninterrupted


def test_length_grouped_ranks_share_each_global_batch() -> None:
    lengths = _lengths(50, seed=6)
    ranks = [BatchStream(50, 8, seed=9, rank=r, world_size=2, lengths=lengths) for r in range(2)]
    single = BatchStream(50, 8, seed=9, lengths=lengths)
    seen: list[int] = []
    for _ in range(single.batches_per_epoch):
        shard0, shard1 = (r.next_indices() for r in ranks)
        assert shard0 and shard1 and not set(shard0) & set(shard1)
        assert sorted(shard0 + shard1) == sorted(single.next_indices())
        seen += shard0 + shard1
    assert sorted(seen) == list(range(50))


# ---------------------------------------------------------------------------
# TaskSampler


def draws(sampler: TaskSampler, count: int) -> np.ndarray:
    return np.array([sampler.task_for_step(s) for s in range(count)])


def test_sampler_is_deterministic_and_stateless() -> None:
    sampler = TaskSampler([1, 1, 2], seed=0)
    sequence = draws(sampler, 300)
    assert np.array_equal(sequence, draws(TaskSampler([1, 1, 2], seed=0), 300))
    assert not np.array_equal(sequence, draws(TaskSampler([1, 1, 2], seed=1), 300))
    # A step's draw does not depend on what was drawn before (resuming needs no state).
    fresh = TaskSampler([1, 1, 2], seed=0)
    assert [fresh.task_for_step(s) for s in (250, 7, 99)] == [sequence[s] for s in (250, 7, 99)]


def test_sampler_two_task_rate_within_binomial_bound() -> None:
    n, p = 20000, 0.75
    counts = np.bincount(draws(TaskSampler([1, 3], seed=42), n), minlength=2)
    sigma = math.sqrt(n * p * (1 - p))  # ~61: a rate off by 0.02 is 400 away
    assert abs(counts[1] - n * p) < 4.5 * sigma


def test_sampler_rates_pass_a_chi_square_test() -> None:
    n = 20000
    weights = [5.0, 3.0, 2.0]
    counts = np.bincount(draws(TaskSampler(weights, seed=7), n), minlength=3)
    expected = n * np.asarray(weights) / sum(weights)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.82  # 99.9% quantile of chi-square with 2 degrees of freedom
    # The same statistic rejects a sampler with slightly wrong rates.
    wrong = n * np.array([0.48, 0.31, 0.21])
    assert float(((counts - wrong) ** 2 / wrong).sum()) > 13.82


def test_sampler_edge_cases() -> None:
    assert {TaskSampler([2.0], seed=0).task_for_step(s) for s in range(50)} == {0}
    assert 1 not in set(draws(TaskSampler([1, 0, 1], seed=0), 500))
    np.testing.assert_allclose(TaskSampler([1, 3], seed=0).probabilities, [0.25, 0.75])
    for bad in ([], [0, 0], [-1, 2]):
        with pytest.raises(ValueError, match="non-negative"):
            TaskSampler(bad, seed=0)


# ---------------------------------------------------------------------------
# checkpoints


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.body = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(ids).mean(dim=1))


def make_training(seed: int):
    torch.manual_seed(seed)
    model = Net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


IDS = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 2, 4]])
TARGETS = torch.tensor([0, 1, 2, 1])


def train_step(model: Net, optimizer, scheduler) -> None:
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(IDS), TARGETS).backward()
    optimizer.step()
    scheduler.step()


def draw_random() -> tuple:
    return (
        torch.rand(4).tolist(),
        torch.randn(2).tolist(),
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.standard_normal(),
    )


def test_checkpoint_round_trip_restores_everything(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_training(seed=0)
    train_step(model, optimizer, scheduler)
    train_step(model, optimizer, scheduler)
    # Leave cached Gaussians in the Python and numpy generators: they are state too.
    random.seed(123)
    random.gauss(0, 1)
    np.random.seed(321)
    np.random.standard_normal()
    assert np.random.get_state()[3] == 1

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    adam = {
        param_id: {name: value.clone() for name, value in entries.items()}
        for param_id, entries in optimizer.state_dict()["state"].items()
    }
    sched_state = scheduler.state_dict()
    lr_at_save = optimizer.param_groups[0]["lr"]
    loop_state = {"step": 2, "streams": [{"epoch": 0, "batches": 2}], "best": None}

    target = tmp_path / "ckpt"
    save_checkpoint(target, model, optimizer, scheduler, loop_state)
    after_save = draw_random()
    train_step(model, optimizer, scheduler)
    continued = {k: v.clone() for k, v in model.state_dict().items()}
    lr_continued = scheduler.get_last_lr()

    fresh_model, fresh_opt, fresh_sched = make_training(seed=99)
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    assert not torch.equal(fresh_model.embed.weight, weights["embed.weight"])

    assert find_checkpoint(target) == target
    restored_loop = load_checkpoint(target, fresh_model, fresh_opt, fresh_sched)
    assert draw_random() == after_save  # torch, python and numpy RNGs restored exactly

    assert restored_loop == loop_state
    for key, value in weights.items():
        assert torch.equal(fresh_model.state_dict()[key], value), key
    restored = fresh_opt.state_dict()
    assert set(restored["state"]) == set(adam)
    for param_id, entries in adam.items():
        assert set(restored["state"][param_id]) == set(entries)
        for name, value in entries.items():
            assert torch.equal(torch.as_tensor(restored["state"][param_id][name]), value)
    assert restored["param_groups"][0]["lr"] == lr_at_save == pytest.approx(1e-2 / 3)
    assert list(restored["param_groups"][0]["betas"]) == [0.9, 0.999]
    assert restored["param_groups"][0]["weight_decay"] == 0.01
    assert fresh_sched.last_epoch == sched_state["last_epoch"] == 2
    assert fresh_sched.get_last_lr() == sched_state["_last_lr"]

    # The restored run takes exactly the step the original took after the save.
    train_step(fresh_model, fresh_opt, fresh_sched)
    for key, value in continued.items():
        assert torch.equal(fresh_model.state_dict()[key], value), key
    assert fresh_sched.get_last_lr() == lr_continued


def test_checkpoint_files_and_overwrite(tmp_path: Path) -> None:
    model, optimizer, scheduler = make_training(seed=0)
    target = tmp_path / "run" / "checkpoint"
    save_checkpoint(target, model, optimizer, scheduler, {"step": 0})
    train_step(model, optimizer, scheduler)
    save_checkpoint(target, model, optimizer, scheduler, {"step": 1})
    assert (target / MODEL_FILE).is_file()
    assert read_json(target / STATE_FILE)["loop"] == {"step": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["checkpoint"]
    # Nothing pickled: the state file is plain JSON.
    json.loads((target / STATE_FILE).read_text())


def test_find_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    assert find_checkpoint(target) is None
    target.mkdir()
    assert find_checkpoint(target) is None  # a folder without state.json is no checkpoint
    target.rmdir()
    old = tmp_path / "ckpt.old"
    old.mkdir()
    (old / STATE_FILE).write_text("{}")
    assert find_checkpoint(target) == old


# ---------------------------------------------------------------------------
# atomic writes


def test_atomic_dir_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as scratch:
        assert scratch != target and scratch.parent == tmp_path
        (scratch / "new.txt").write_text("new")
        assert (target / "old.txt").is_file()  # the old version stays until the end
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no scratch, no .old


def test_atomic_dir_creates_a_new_folder_and_clears_a_stale_old(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out"
    stale = tmp_path / "deep" / "out.old"
    stale.mkdir(parents=True)
    (stale / "x").write_text("stale")
    with atomic_dir(target) as scratch:
        (scratch / "a").write_text("a")
    assert (target / "a").read_text() == "a"
    assert not stale.exists()


def test_atomic_dir_failure_keeps_the_old_version(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as scratch:
        (scratch / "half.txt").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_settled_dir_falls_back_to_old(tmp_path: Path) -> None:
    target = tmp_path / "model"
    assert settled_dir(target) is None
    old = tmp_path / "model.old"
    old.mkdir()  # a crash between the two renames leaves only this
    assert settled_dir(target) == old
    target.mkdir()
    assert settled_dir(target) == target


def test_published_once_keeps_the_first_writers_folder_under_a_reader(tmp_path: Path) -> None:
    # The CI race: one grid job found the cached features and began reading them while
    # another job, which had encoded the same split, moved the folder aside to replace it.
    target = tmp_path / "features" / "split-abc"
    with published_once(target) as scratch:
        (scratch / "state.json").write_text("first")
    read_by_a_reader = target / "state.json"
    with published_once(target) as scratch:
        (scratch / "state.json").write_text("second")
    assert read_by_a_reader.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["split-abc"]  # no scratch left


def test_published_once_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "split-abc"
    with pytest.raises(RuntimeError), published_once(target) as scratch:
        (scratch / "half").write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def _publish_and_read(target: Path, start: Any, reads: int) -> list[str]:
    start.wait()
    seen = []
    for _ in range(reads):
        if not target.is_dir():
            with published_once(target) as scratch:
                for name in ("a", "b", "c"):
                    (scratch / name).write_text(name * 1000)
        seen.append("".join(sorted((target / name).read_text()[0] for name in ("a", "b", "c"))))
    return seen


def test_published_once_under_concurrent_processes(tmp_path: Path) -> None:
    target = tmp_path / "split-abc"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(4)
        with context.Pool(4) as pool:
            outcomes = pool.starmap(_publish_and_read, [(target, start, 200)] * 4)
    assert all(seen == ["abc"] * 200 for seen in outcomes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split-abc"]


def test_atomic_write_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.json"
    atomic_write_json(path, {"a": [1, 2], "p": Path("/x")})
    assert read_json(path) == {"a": [1, 2], "p": "/x"}
    atomic_write_text(path, "replaced")
    assert path.read_text() == "replaced"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]


# ---------------------------------------------------------------------------
# Non-finite steps without a host sync per step


def _guarded_linear(policy: str):
    from types import SimpleNamespace

    from xstilts.train.loop import LoopState, _StepGuard

    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True)
    guard = _StepGuard(policy, optimizer, SimpleNamespace(scaler=None), [])
    return layer, optimizer, guard, LoopState()


def _train_step(layer, optimizer, guard, factor: float) -> torch.Tensor:
    loss = layer(torch.ones(4, 3)).sum() * factor
    loss.backward()
    norm = nn.utils.clip_grad_norm_(layer.parameters(), 1.0)
    if guard.step_allowed(loss.detach(), norm):
        optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def test_a_skipped_step_leaves_the_model_and_optimizer_untouched_on_the_device(caplog) -> None:
    layer, optimizer, guard, state = _guarded_linear("skip")
    assert guard.on_device
    losses: list[float] = []
    for step, factor in enumerate([1.0, math.nan, 1.0], start=1):
        before = [p.detach().clone() for p in layer.parameters()]
        moments = [optimizer.state[p]["exp_avg"].clone() for p in optimizer.state]
        loss = _train_step(layer, optimizer, guard, factor)
        losses.append(float(loss))
        guard.pending.append(_pending(step, loss))
        changed = any(
            not torch.equal(a, p) for a, p in zip(before, layer.parameters(), strict=True)
        )
        assert changed == (step != 2)
        if step == 2:
            assert all(
                torch.equal(m, optimizer.state[p]["exp_avg"])
                for m, p in zip(moments, optimizer.state, strict=True)
            )
    assert all(int(s["step"]) == 2 for s in optimizer.state.values())
    guard.flush(state)
    assert state.skipped_steps == [2]
    assert state.running_terms["loss"] == pytest.approx(losses[0] + losses[2])
    assert "step 2: the loss of task 't' is nan; step skipped" in caplog.text


def test_a_non_finite_step_stops_the_run_when_the_terms_are_read() -> None:
    from xstilts.errors import XstiltsError

    layer, optimizer, guard, state = _guarded_linear("error")
    for step, factor in enumerate([1.0, math.inf], start=1):
        guard.pending.append(_pending(step, _train_step(layer, optimizer, guard, factor)))
    with pytest.raises(XstiltsError, match="step 2: the loss of task 't' is -inf"):
        guard.flush(state)


def _pending(step: int, loss: torch.Tensor):
    from xstilts.train.loop import _PendingStep

    return _PendingStep(step, "t", {"loss": loss}, None)


def test_the_guard_reads_a_flag_per_step_where_the_device_cannot_skip() -> None:
    from types import SimpleNamespace

    from xstilts.train.adversarial import SMART
    from xstilts.train.loop import _StepGuard

    layer = nn.Linear(3, 2)
    smart = SimpleNamespace(objective=SMART(mu=0.1))
    for optimizer, tasks in [
        (torch.optim.AdamW(layer.parameters(), fused=False), []),
        (torch.optim.AdamW(layer.parameters(), fused=True), [smart]),  # a teacher to update
    ]:
        guard = _StepGuard("skip", optimizer, SimpleNamespace(scaler=None), tasks)
        assert not guard.on_device
        assert not guard.step_allowed(torch.tensor(math.nan), None)
        assert not guard.step_allowed(torch.tensor(1.0), torch.tensor(math.inf))
        assert guard.step_allowed(torch.tensor(1.0), torch.tensor(2.0))
        assert not hasattr(optimizer, "found_inf")
