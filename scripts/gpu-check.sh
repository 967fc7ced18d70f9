#!/usr/bin/env bash
# The GPU checks of docs/cuda.md, for a GPU machine without a Rust toolchain. Build here first:
#   bash scripts/build-cuda.sh --no-default-features --features hub --bin tokenlens --test golden
# then copy the repository, the two binaries and this script there and run, from the repository
# root:
#   TOKENLENS_BIN=path/to/tokenlens GOLDEN_BIN=path/to/golden-<hash> \
#     bash scripts/gpu-check.sh OUT_DIR [ab] [bench] [golden]
# ab:     the same benchmark of the CUDA builds OLD_TOKENLENS_BIN and TOKENLENS_BIN, batch 1, in
#         three interleaved rounds on the same warm GPU (an A/B of one change).
# bench:  the engine benchmark, batch 1 (CUDA graphs on and off) and batched, on MiniLM- and
#         BERT-base-shaped models with random weights (made by PyTorch `transformers`, which must
#         be importable by python3; timing does not depend on the weights).
# golden: every golden case on the GPU (needs target/models/minilm-head from
#         scripts/fetch-minilm.sh) and CPU/GPU agreement of `score`.
# The CUDA 13 libraries (libcublas, libcublasLt, libcurand, libnvrtc, libcudart) must be on
# LD_LIBRARY_PATH (for PyTorch's wheels: <site-packages>/nvidia/cu13/lib).
set -uo pipefail
out=${1:?usage: gpu-check.sh OUT_DIR [ab] [bench] [golden]}
shift
stages=${*:-bench golden}
mkdir -p "$out"
bin=${TOKENLENS_BIN:?set TOKENLENS_BIN to the CUDA build of tokenlens}
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"

# A BertForSequenceClassification with random weights: DIR HIDDEN LAYERS HEADS INTERMEDIATE.
random_model() {
  python3 - "$@" <<'PY'
import sys, torch, transformers
path, hidden, layers, heads, intermediate = sys.argv[1], *map(int, sys.argv[2:])
torch.manual_seed(0)
config = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers,
                                 num_attention_heads=heads, intermediate_size=intermediate)
transformers.BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
PY
  cp fixtures/models/minilm-rt-sentiment/tokenizer.json "$1/"
}

bench() { # LOG MODEL_DIR ARGS...: one `tokenlens bench` table, appended to LOG
  local log=$1 model=$2
  shift 2
  echo "## $* (TOKENLENS_CUDA_GRAPHS=${TOKENLENS_CUDA_GRAPHS:-1}, TOKENLENS_CUDA_EVENT_TRACKING=${TOKENLENS_CUDA_EVENT_TRACKING:-0})" | tee -a "$log"
  "$bin" bench --model "$model" --device cuda "$@" 2>&1 | tee -a "$log" || status=1
}

# The random models live outside OUT (nothing of them comes back) and are made once per machine.
models=${TOKENLENS_GPU_MODELS:-/tmp/tokenlens-gpu-models}
if [[ " $stages " == *" bench "* || " $stages " == *" ab "* ]]; then
  [ -f "$models/minilm/config.json" ] || random_model "$models/minilm" 384 6 12 1536
  [ -f "$models/bert-base/config.json" ] || random_model "$models/bert-base" 768 12 12 3072
fi

if [[ " $stages " == *" ab "* ]]; then
  old=${OLD_TOKENLENS_BIN:?set OLD_TOKENLENS_BIN to the CUDA build to compare with}
  new=$bin
  for round in 1 2 3; do
    for build in old new; do
      [ $build = old ] && bin=$old || bin=$new
      bench "$out/ab-$build.txt" "$models/bert-base" --precisions f32 --batch 1 --lengths 16,128,512 --repeats 10
      bench "$out/ab-$build.txt" "$models/minilm" --precisions f32 --batch 1 --lengths 512 --repeats 10
    done
  done
  bin=$new
fi

if [[ " $stages " == *" bench "* ]]; then
  for name in minilm bert-base; do
    log=$out/bench-$name.txt
    dir=$models/$name
    bench "$log" "$dir" --precisions f32 --batch 1
    bench "$log" "$dir" --precisions f32 --batch 32 --repeats 3
  done
  log=$out/bench-minilm-more.txt
  dir=$models/minilm
  bench "$log" "$dir" --precisions f64 --batch 1
  bench "$log" "$dir" --precisions f32 --batch 1 --method attnlrp
fi

if [[ " $stages " == *" golden "* ]]; then
  golden=${GOLDEN_BIN:?set GOLDEN_BIN to the golden test binary built with --features cuda}
  # Every golden case on the GPU, f32 and f64, with CUDA graphs (the test fails if they were
  # not replayed).
  TOKENLENS_TEST_ROOT=$PWD TOKENLENS_TEST_DEVICE=cuda "$golden" --test-threads 2 --nocapture \
    2>&1 | tee "$out/golden.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  # CPU and GPU give the same scores, eagerly and through a replayed graph.
  minilm=target/models/minilm-head
  text="The acting was wooden, but the score is lovely."
  printf '%s\n%s\n' "$text" "$text." | "$bin" score --model "$minilm" --device cpu --batch-size 1 > "$out/score-cpu.jsonl"
  printf '%s\n%s\n' "$text" "$text." | "$bin" score --model "$minilm" --device cuda --batch-size 1 > "$out/score-cuda.jsonl"
  python3 - "$out/score-cpu.jsonl" "$out/score-cuda.jsonl" <<'PY' || status=1
import json, sys
cpu, gpu = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
worst = 0.0
for a, b in zip(cpu, gpu):
    worst = max(worst, max(abs(x - y) for x, y in zip(a["logits"], b["logits"])))
    for wa, wb in zip(a["words"], b["words"]):
        worst = max(worst, abs(wa["score"] - wb["score"]))
print(f"largest logit or word-score difference cpu vs cuda: {worst:.2e}")
sys.exit(0 if worst < 1e-4 and len(cpu) == len(gpu) == 2 else 1)
PY
fi
echo "gpu-check exit $status"
exit $status
