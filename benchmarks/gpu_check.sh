#!/usr/bin/env bash
# The GPU check, one command on a machine with a CUDA GPU (about 8 minutes):
#   bash benchmarks/gpu_check.sh OUT_DIR [MODEL]
# MODEL: model.name of the encoder (default: the installed multilingual-e5-small); a
# folder made by benchmarks/random_encoder.py will do where the weights cannot travel.
# Runs: XLM-R Large MFU (gpu_throughput.py), our loop against the Trainer
# (train_throughput.py), gpu_smoke.yaml (XQuAD-sentence QA) on one GPU, and the same recipe under
# torchrun with two CPU processes (gloo); each step's output lands in OUT_DIR.
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [MODEL]}
model=${2:-multilingual-e5-small}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python=${PYTHON:-python3}
here=$(dirname "$0")

step() {
  local name=$1 limit=$2
  shift 2
  local start
  start=$(date +%s)
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  echo "=== $name rc=$? $(($(date +%s) - start))s"
  tail -n 40 "$out/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', \
transformers.__version__, torch.cuda.get_device_name())" || exit 1
step gpu_throughput 170 $python "$here/gpu_throughput.py" --batch-sizes 32 64
step gpu_run 100 $python -m xstilts.cli run "$here/gpu_smoke.yaml" \
  --set "model.name=$model" --out "$out/gpu1"
step train_throughput 140 $python "$here/train_throughput.py" --model "$model" \
  --tasks ud_pos xquad_sentences
OMP_NUM_THREADS=8 step torchrun_cpu 120 $python -m torch.distributed.run --nproc_per_node 2 \
  -m xstilts.cli run "$here/gpu_smoke.yaml" --set "model.name=$model" --set runtime.cpu=true \
  --out "$out/cpu2"
for run in gpu1 cpu2; do
  find "$out/$run" -name training.json -o -name results.json | sort | while read -r file; do
    echo "--- $file"
    cat "$file"
  done
done >"$out/run_files.txt" 2>&1
