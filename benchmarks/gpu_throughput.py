"""Fine-tuning throughput and model FLOPs utilisation (MFU) of XLM-R Large on one GPU.

XLM-R Large is built from its configuration with random weights (24 layers,
hidden 1024, 16 heads, intermediate 4096, vocabulary 250002, 514 positions; no
download), with SDPA attention, and fine-tuned in bf16 autocast (fp32 master
weights, fused AdamW where the device has it, gradient clipping at 1.0: what
xstilts' training loop does per step) on:

- classification (XNLI / PAWS-X shape) at max length 128 and 256,
- span QA (XQuAD / MLQA / TyDiQA shape) at max length 384.

The step is a plain loop over xstilts' own model and format code: ``MultiTaskModel``
(encoder plus the format's head), ``TaskFormat.collate`` and ``TaskFormat.loss``.
It is not ``train_phase`` (xstilts/train/loop.py) itself, which also validates and
writes full checkpoints (about 6.7 GB for this model with its optimizer state), so
its wall time is not the step's. Every sequence is full length (no padding), so
every token counted is a real one.

Model FLOPs per token, the PaLM convention: 6 * N + 12 * layers * hidden * seq_len,
where N is the non-embedding parameter count (embedding lookups are not matmuls)
and the second term is the attention score and value matmuls (forward and
backward). MFU = achieved model FLOPs/s / the GPU's dense bf16 peak (table below,
or --peak-tflops). Goal: >= 45% on an H100/H200-class GPU.

    python benchmarks/gpu_throughput.py                 # the GPU run
    python benchmarks/gpu_throughput.py --small         # CPU smoke run, seconds
    python benchmarks/gpu_throughput.py --batch-sizes 32 64 --steps 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from xstilts.formats import get_format
from xstilts.modeling import MultiTaskModel
from xstilts.tasks.spec import TaskSpec

# Dense (no sparsity) bf16 tensor-core peaks in TFLOPS, from the vendors' data
# sheets; matched against torch.cuda.get_device_name(), first match wins.
BF16_PEAK_TFLOPS: list[tuple[str, float]] = [
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
]

XLMR_LARGE = {
    "vocab_size": 250002,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "max_position_embeddings": 514,
}
SMALL = {
    "vocab_size": 1000,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 130,
}


@dataclass(frozen=True)
class Workload:
    name: str
    format: str
    max_length: int


WORKLOADS = [
    Workload("classification-128", "classification", 128),
    Workload("classification-256", "classification", 256),
    Workload("span_qa-384", "span_qa", 384),
]
SMALL_WORKLOADS = [
    Workload("classification-32", "classification", 32),
    Workload("classification-64", "classification", 64),
    Workload("span_qa-96", "span_qa", 96),
]


@dataclass
class Result:
    workload: Workload
    batch_size: int
    step_seconds: list[float]
    peak_memory_gib: float | None

    @property
    def median_step(self) -> float:
        return statistics.median(self.step_seconds)

    @property
    def tokens_per_second(self) -> float:
        return self.batch_size * self.workload.max_length / self.median_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny model, CPU smoke run")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per workload")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the table")
    parser.add_argument("--device", default=None, help="default: cuda if present, else cpu")
    args = parser.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.small:
        raise SystemExit(
            "no CUDA GPU here: XLM-R Large figures mean something only on a GPU; "
            "run with --small for the CPU smoke run"
        )
    sizes = SMALL if args.small else XLMR_LARGE
    workloads = SMALL_WORKLOADS if args.small else WORKLOADS
    steps = args.steps or (3 if args.small else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 5)
    batch_sizes = args.batch_sizes or ([4] if args.small else [32, 64])

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:  # a tiny model is latency-bound: more intra-op threads only spin
        torch.set_num_threads(1)
    peak = peak_tflops(device, args.peak_tflops)
    _print_header(device, sizes, args.small, peak)

    results = []
    for workload in workloads:
        for batch_size in batch_sizes:
            try:
                result = measure(workload, batch_size, sizes, device, steps, warmup)
            except torch.OutOfMemoryError:
                print(f"{workload.name} batch {batch_size}: out of memory, skipped")
                torch.cuda.empty_cache()
                continue
            results.append(result)
            print(_row(result, sizes, peak), flush=True)
    if args.small:
        print(
            "\nSMOKE RUN (--small): a tiny model on the "
            f"{device.type.upper()}; these figures say nothing about GPU throughput or MFU."
        )


def measure(
    workload: Workload,
    batch_size: int,
    sizes: dict[str, int],
    device: torch.device,
    steps: int,
    warmup: int,
) -> Result:
    """Fine-tune a fresh model for ``warmup + steps`` steps; time the last ``steps``."""
    torch.manual_seed(0)
    fmt = get_format(workload.format)
    labels = (
        ["entailment", "neutral", "contradiction"] if workload.format == "classification" else []
    )
    spec = TaskSpec(name="bench", family="bench", format=workload.format, labels=labels)
    encoder = build_xlmr(sizes)
    counted = sum(p.numel() for n, p in encoder.named_parameters() if not n.startswith("embed"))
    assert counted == non_embedding_parameters(sizes), (counted, non_embedding_parameters(sizes))
    model = MultiTaskModel(encoder, {"bench": fmt.build_head(spec, encoder)}, {"bench": fmt})
    model.to(device).train()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused or None)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type in ("cuda", "cpu")
        else nullcontext()
    )
    generator = torch.Generator().manual_seed(1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(warmup + steps):
        columns = synthetic_features(workload, batch_size, sizes["vocab_size"], generator)
        started = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in fmt.collate(columns, 1).items()}
        with autocast:
            outputs = model("bench", batch)
            loss = fmt.loss(outputs, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - started)
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Result(workload, batch_size, times, peak_memory)


def build_xlmr(sizes: dict[str, int]) -> XLMRobertaModel:
    """An XLM-R-shaped encoder with random weights and SDPA attention."""
    config = XLMRobertaConfig(
        **sizes,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        attn_implementation="sdpa",
    )
    model = XLMRobertaModel(config, add_pooling_layer=False)
    assert model.config._attn_implementation == "sdpa", model.config._attn_implementation
    return model


def synthetic_features(
    workload: Workload, batch_size: int, vocab: int, generator: torch.Generator
) -> dict[str, list]:
    """Full-length features in the columns the format's ``collate`` takes."""
    length = workload.max_length
    ids = torch.randint(5, vocab, (batch_size, length), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>
    columns: dict[str, list] = {"input_ids": ids.tolist()}
    if workload.format == "classification":
        columns["labels"] = torch.randint(0, 3, (batch_size,), generator=generator).tolist()
    else:
        start = torch.randint(1, length - 8, (batch_size,), generator=generator)
        columns["start_positions"] = start.tolist()
        columns["end_positions"] = (start + 3).tolist()
    return columns


def non_embedding_parameters(sizes: dict[str, int]) -> int:
    """Parameters of the transformer layers (weights and biases, LayerNorms included)."""
    hidden, inner = sizes["hidden_size"], sizes["intermediate_size"]
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden
    feed_forward = hidden * inner + inner + inner * hidden + hidden + 2 * hidden
    return sizes["num_hidden_layers"] * (attention + feed_forward)


def flops_per_token(sizes: dict[str, int], seq_len: int) -> tuple[float, float]:
    """(6N, 12 * layers * hidden * seq_len): dense and attention training FLOPs."""
    dense = 6.0 * non_embedding_parameters(sizes)
    attention = 12.0 * sizes["num_hidden_layers"] * sizes["hidden_size"] * seq_len
    return dense, attention


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _print_header(device: torch.device, sizes: dict[str, int], small: bool, peak: float | None):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    model = "tiny XLM-R-shaped model (--small)" if small else "XLM-R Large (random weights)"
    n = non_embedding_parameters(sizes)
    print(f"device: {name}; torch {torch.__version__}")
    print(f"model: {model}, {n / 1e6:.1f}M non-embedding parameters, SDPA, bf16 autocast")
    print("step: xstilts MultiTaskModel + format collate/loss, AdamW, clip 1.0 (plain loop)")
    if peak is None:
        print("MFU: not computed (no bf16 peak known for this device; --peak-tflops sets one)")
    else:
        print(f"MFU against a dense bf16 peak of {peak:.0f} TFLOPS; model FLOPs/token = 6N + attn")
    if small:
        print("SMOKE RUN: tiny model, few steps; checks the benchmark runs, measures nothing")
    header = (
        f"{'workload':<20} {'batch':>5} {'tokens/s':>10} {'steps/s':>8} {'spread':>7} "
        f"{'peak GiB':>8} {'TFLOPS':>7} {'MFU 6N':>7} {'MFU':>6}"
    )
    print(header)
    print("-" * len(header))


def _row(result: Result, sizes: dict[str, int], peak: float | None) -> str:
    dense, attention = flops_per_token(sizes, result.workload.max_length)
    tokens = result.tokens_per_second
    achieved = tokens * (dense + attention) / 1e12
    times = result.step_seconds
    spread = (max(times) - min(times)) / result.median_step if len(times) > 1 else 0.0
    memory = f"{result.peak_memory_gib:.1f}" if result.peak_memory_gib is not None else "-"
    mfu_dense = f"{100 * tokens * dense / 1e12 / peak:.1f}%" if peak else "-"
    mfu = f"{100 * achieved / peak:.1f}%" if peak else "-"
    return (
        f"{result.workload.name:<20} {result.batch_size:>5} {tokens:>10.0f} "
        f"{1 / result.median_step:>8.2f} {100 * spread:>6.0f}% {memory:>8} "
        f"{achieved:>7.3g} {mfu_dense:>7} {mfu:>6}"
    )


if __name__ == "__main__":
    main()
