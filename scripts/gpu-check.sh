#!/usr/bin/env bash
# The GPU checks of docs/cuda.md, for a GPU machine without a Rust toolchain. Build here first:
#   bash scripts/build-cuda.sh --no-default-features --features hub --bin tokenlens --test golden
# then copy the repository (with target/models from scripts/fetch-minilm.sh), the two binaries and
# this script there and run, from the repository root:
#   TOKENLENS_BIN=path/to/tokenlens GOLDEN_BIN=path/to/golden-<hash> bash scripts/gpu-check.sh OUT_DIR
# The CUDA 13 libraries (libcublas, libcublasLt, libcurand, libnvrtc, libcudart) must be on
# LD_LIBRARY_PATH (for PyTorch's wheels: <site-packages>/nvidia/cu13/lib).
set -uo pipefail
out=${1:?usage: gpu-check.sh OUT_DIR}
mkdir -p "$out"
bin=${TOKENLENS_BIN:?set TOKENLENS_BIN to the CUDA build of tokenlens}
golden=${GOLDEN_BIN:?set GOLDEN_BIN to the golden test binary built with --features cuda}
minilm=target/models/minilm-head
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

# 1. Every golden case on the GPU, f32 and f64.
TOKENLENS_TEST_ROOT=$PWD TOKENLENS_TEST_DEVICE=cuda "$golden" --test-threads 3 2>&1 | tee "$out/golden.log"
golden_status=${PIPESTATUS[0]}

# 2. The engine benchmark, batch 1 and batched.
"$bin" bench --model "$minilm" --device cuda --precisions f32,f64 --batch 1 | tee "$out/bench-b1.txt"
"$bin" bench --model "$minilm" --device cuda --precisions f32 --batch 32 --repeats 3 | tee "$out/bench-b32.txt"

# 3. CPU and GPU give the same scores.
text="The acting was wooden, but the score is lovely."
for device in cpu cuda; do
  echo "$text" | "$bin" score --model "$minilm" --device "$device" > "$out/score-$device.jsonl"
done
python3 - "$out/score-cpu.jsonl" "$out/score-cuda.jsonl" <<'PY'
import json, sys
cpu, gpu = (json.loads(open(p).readline()) for p in sys.argv[1:])
diff = max(abs(a - b) for a, b in zip(cpu["logits"], gpu["logits"]))
print(f"largest logit difference cpu vs cuda: {diff:.2e}")
sys.exit(0 if diff < 1e-4 else 1)
PY
score_status=$?
echo "golden exit $golden_status, cpu/cuda score comparison exit $score_status"
exit $(( golden_status != 0 || score_status != 0 ))
