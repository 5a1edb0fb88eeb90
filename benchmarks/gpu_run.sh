#!/usr/bin/env bash
# Every GPU measurement in docs/benchmarks.md, in one run on one CUDA machine (about 6 minutes on an H200).
#
#   benchmarks/gpu_run.sh OUT_DIR [PTB_DIR]      # from the repository root; PTB_DIR default ../shared/data/ptb
#
# Steps (each one logged to OUT_DIR/steps.log, with its exit status and seconds; a failing step does not stop
# the others, and the script's exit status is the number of failed steps):
#   env          GPU, driver, torch, CUDA, cuDNN and the versions of the packages the zoo runs on
#   gpu_check    benchmarks/gpu_check.py: CUDA vs CPU parity of every cell (fused ones through cuDNN, with and
#                without lengths), a bf16-autocast PTB language-model slice, tokens/s in float32 and bf16
#   kernels      the same parity with the hand-written kernels forced onto the GPU (ZOO_KERNELS=all)
#   cells        benchmarks/cells.py --device cuda at T = 64 128 512 2048 (min_gru/min_lstm scan vs loop)
#   cells_kern   the kernel cells again with ZOO_KERNELS=all (hand-written kernels on the GPU), and each
#                captured whole as CUDA graphs (--graphs)
#   cells_graphs the other loop cells (autograd loop) and min_gru, plain and as CUDA graphs
#   quickstart   zoo fit -c recipes/quickstart.yaml on the GPU with bf16-mixed precision, tracked by MLflow
#   ptb          one epoch of recipes/lm/ptb-gru.yaml on the GPU (float32), tracked by MLflow
# Results: OUT_DIR/{steps.log, gpu_check.md, gpu_check_kernels.md, cells_cuda.json, cells_cuda_kernels.json,
# cells_cuda_graphs.json, mlflow.db}. STEP_TIMEOUT (seconds, default 240) caps each step; STEPS="env cells ..."
# runs only the steps named.
set -u
out=${1:?usage: benchmarks/gpu_run.sh OUT_DIR [PTB_DIR]}
ptb=${2:-../shared/data/ptb}
py=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log="$out/steps.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
failed=0

step() {
  local name=$1
  shift
  [[ "${STEPS:-all}" == all || " ${STEPS:-} " == *" $name "* ]] || return 0
  local start=$SECONDS rc
  echo "=== $name: $*" | tee -a "$log"
  timeout "${STEP_TIMEOUT:-240}" "$@" >>"$log" 2>&1
  rc=$?
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
}

versions() {
  uname -sr
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$py" - <<'EOF'
import importlib.metadata as md
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
for name in ["lightning", "torchmetrics", "mlflow", "datasets", "tokenizers", "jsonargparse", "pyarrow", "fsspec"]:
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "missing")
EOF
}

export -f versions
export py
step env bash -c versions
step gpu_check "$py" benchmarks/gpu_check.py --ptb "$ptb" --out "$out/gpu_check.md"
step kernels env ZOO_KERNELS=all "$py" benchmarks/gpu_check.py --skip lm throughput --out "$out/gpu_check_kernels.md"
step cells "$py" benchmarks/cells.py --device cuda --T 64 128 512 2048 --repeats 5 --json "$out/cells_cuda.json"
step cells_kern env ZOO_KERNELS=all "$py" benchmarks/cells.py --device cuda --T 128 512 2048 --repeats 5 \
  --graphs --cells gru_cho gru1 gru2 gru3 mgu --json "$out/cells_cuda_kernels.json"
step cells_graphs "$py" benchmarks/cells.py --device cuda --T 128 512 --repeats 5 --graphs \
  --cells gru1 mgu li_gru ln_gru indrnn min_gru --json "$out/cells_cuda_graphs.json"
step quickstart "$py" -m zoo fit -c recipes/quickstart.yaml --trainer.accelerator gpu --trainer.devices 1 \
  --trainer.precision bf16-mixed --trainer.default_root_dir "$out/runs/quickstart" --trainer.enable_progress_bar false
step ptb "$py" -m zoo fit -c recipes/lm/ptb-gru.yaml --trainer.accelerator gpu --trainer.devices 1 \
  --trainer.max_epochs 1 --trainer.default_root_dir "$out/runs/ptb" --trainer.enable_progress_bar false \
  --data.path text --data.text_column text --data.cache_dir "$out/cache" \
  --data.data_files "{train: $ptb/ptb.train.txt, validation: $ptb/ptb.valid.txt, test: $ptb/ptb.test.txt}"
rm -rf "$out/runs" "$out/cache"
echo "=== $failed step(s) failed" | tee -a "$log"
exit "$failed"
