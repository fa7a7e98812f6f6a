# %% [markdown]
# # xstilts from Python
#
# One experiment, a small grid, its results as a pandas DataFrame and its report, all
# through the Python API. It runs offline in seconds on a CPU: a tiny randomly
# initialised encoder on the smoke demo's generated data, so the scores say that the
# machinery works, nothing about transfer. For real runs, swap in a real config (a YAML
# file of configs/ works as well as the mappings below).
#
# Run it as a script (`python examples/notebook_api.py`) or open it as a notebook
# (VS Code and Jupytext read the `# %%` cells). It writes under `xstilts-example/`,
# or the folder `XSTILTS_EXAMPLE_OUT` names.

# %%
import logging
import os
from pathlib import Path

import torch

import xstilts
from xstilts.demo.smoke import write_demo_data

# Everything below is local: no hub, no downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# A 32-wide encoder is latency-bound: more threads only spin against each other.
torch.set_num_threads(1)
# xstilts configures no logging: this shows its progress lines, as the CLI does.
logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
logging.getLogger("xstilts").setLevel(logging.INFO)

OUT = Path(os.environ.get("XSTILTS_EXAMPLE_OUT", "xstilts-example"))
task_file = write_demo_data(OUT / "data")

# %% [markdown]
# ## One experiment
#
# English NLI as the intermediate task, then a paraphrase task trained in English and
# evaluated in four languages. A config is a YAML file, a mapping of its keys, or an
# `ExperimentConfig`; overrides are `--set` strings or a mapping of dotted keys.

# %%
training = {
    "learning_rate": 1e-3,
    "batch_size": 16,
    "epochs": 1,
    "max_train_examples": 128,
    "max_eval_examples": 32,
}
experiment = {
    "model": {"tiny": {}},
    "intermediate": {"tasks": ["demo_nli"], "training": training},
    "target": {"task": "demo_paraphrase", "training": training},
    "evaluation": {"languages": ["en", "de", "fr", "es"], "max_examples": 50},
    "data": {
        "source": "local",
        "data_dir": str(OUT / "data"),
        "task_files": [str(task_file)],
        "cache_dir": str(OUT / "cache"),
    },
}
result = xstilts.run(experiment, out=OUT / "runs", overrides={"seed": 1})
print(f"{result.metric} per language: {result.scores}")
print(f"zero-shot average: {result.average_zero_shot:.1f}")
print(f"run folder: {result.run_dir}")
print(f"intermediate folder: {result.intermediate_dir}")

# %% [markdown]
# Running it again costs nothing: the finished run is read back.

# %%
again = xstilts.run(experiment, out=OUT / "runs", overrides=["seed=1"])
assert again.scores == result.scores

# %% [markdown]
# ## A grid
#
# The baseline and the NLI option, two seeds each: two intermediate runs, four target
# runs. A failed run does not raise (the others go on); `.check()` raises if one did.

# %%
grid = {
    "name": "tiny-grid",
    "grid": {
        "seeds": [1, 2],
        "intermediate": {
            "baseline": None,
            "nli": {"tasks": ["demo_nli"], "training": training},
        },
        "targets": ["demo_paraphrase"],
    },
    "base": {key: experiment[key] for key in ("model", "target", "evaluation", "data")},
}
outcome = xstilts.run_grid(grid, out=OUT / "grid").check()
print(f"{len(outcome.jobs)} runs ran, {len(outcome.planned)} in the plan")

# %% [markdown]
# ## Its results, as a DataFrame
#
# Long form: a row per run, language and metric; `score` is the XTREME task score.

# %%
frame = xstilts.results(OUT / "grid", metric="score")
print(frame.pivot_table(index=["option", "seed"], columns="language", values="value"))
print(frame.groupby("option")["value"].mean())
frame.to_csv(OUT / "results.csv", index=False)

# %% [markdown]
# ## The report
#
# Tables (Markdown, CSV, LaTeX), figures and one HTML page.

# %%
written = xstilts.write_report(OUT / "grid", out=OUT / "report")
print(f"report: {len(written)} files in {OUT / 'report'}")
