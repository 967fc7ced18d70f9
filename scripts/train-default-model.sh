#!/usr/bin/env bash
# Trains the default model with the recipe of fixtures/models/minilm-rt-sentiment/README.md, once
# per seed, and prints every run's accuracy on dev (the selection set), RT test and the two
# out-of-domain files, marking the run with the best dev accuracy. Selection is on dev only.
#   bash scripts/fetch-minilm.sh        # target/models/all-MiniLM-L6-v2
#   TOKENLENS_BIN=tokenlens bash scripts/train-default-model.sh OUT_DIR DEVICE SEED...
# TRAIN_PARALLEL runs that many trainings at once (a GPU is far from busy with one); TRAIN_LR
# overrides the peak learning rate (1e-4, the shipped model's; 5e-5 is the reference recipe).
# TRAIN_INIT_SEED=N starts every run from the same head (train --init-seed N) and then makes a greedy
# soup of the runs (tokenlens soup, ranked on dev) in OUT_DIR/soup, measured like the runs;
# SOUP_EXTRA adds more ingredients (space-separated model directories, e.g. the shipped model).
set -uo pipefail
out=${1:?usage: train-default-model.sh OUT_DIR DEVICE SEED...}
device=${2:?usage: train-default-model.sh OUT_DIR DEVICE SEED...}
shift 2
[ $# -gt 0 ] || { echo "train-default-model: give at least one seed" >&2; exit 2; }
bin=${TOKENLENS_BIN:-tokenlens}
parallel=${TRAIN_PARALLEL:-1}
base=target/models/all-MiniLM-L6-v2
data=fixtures/data
mkdir -p "$out"

train_one() {
  local seed=$1 start=$SECONDS
  "$bin" train --base "$base" --train "$data/rt-snippets.train.tsv" --dev "$data/rt-snippets.dev.tsv" \
    --labels negative,positive --epochs 3 --lr "${TRAIN_LR:-1e-4}" --batch-size 32 --max-length 128 \
    --seed "$seed" ${TRAIN_INIT_SEED:+--init-seed "$TRAIN_INIT_SEED"} --pooler keep --dtype f16 \
    --device "$device" --quiet --out "$out/seed$seed" \
    > "$out/seed$seed.log" 2>&1
  local code=$?
  echo "seed $seed: training exit $code in $((SECONDS - start)) s" | tee -a "$out/seed$seed.log"
}

running=0
for seed in "$@"; do
  train_one "$seed" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait
    running=0
  fi
done
wait

accuracy() { # MODEL FILE -> percent with two decimals
  "$bin" eval --model "$1" --device "$device" --methods none --data "$data/$2" \
    --json "$1/eval-$2.json" > /dev/null 2>&1 || { echo "failed"; return; }
  python3 -c 'import json,sys; print("%.2f" % (100 * json.load(open(sys.argv[1]))["accuracy"]["mean"]))' \
    "$1/eval-$2.json"
}

names=("$@")
if [ -n "${TRAIN_INIT_SEED:-}" ]; then
  ingredients=()
  for seed in "$@"; do ingredients+=("$out/seed$seed"); done
  # shellcheck disable=SC2206
  ingredients+=(${SOUP_EXTRA:-})
  "$bin" soup "${ingredients[@]}" --dev "$data/rt-snippets.dev.tsv" --dtype f16 --device "$device" \
    --out "$out/soup" 2>&1 | tee "$out/soup.log"
  names+=(soup)
fi

printf '%-6s  %-7s  %-7s  %-7s  %-7s\n' seed dev test tweets nyt | tee "$out/accuracy.txt"
best_seed='' best_dev=-1
for seed in "${names[@]}"; do
  model=$out/seed$seed
  [ "$seed" = soup ] && model=$out/soup
  [ -f "$model/model.safetensors" ] || { echo "$seed  (no model)" | tee -a "$out/accuracy.txt"; continue; }
  dev=$(accuracy "$model" rt-snippets.dev.tsv)
  test=$(accuracy "$model" rt-snippets.test.tsv)
  tweets=$(accuracy "$model" vader-tweets.tsv)
  nyt=$(accuracy "$model" vader-nytEditorialSnippets.tsv)
  printf '%-6s  %-7s  %-7s  %-7s  %-7s\n' "$seed" "$dev" "$test" "$tweets" "$nyt" | tee -a "$out/accuracy.txt"
  if [ "$dev" != failed ] && python3 -c "import sys; sys.exit(0 if float('$dev') > float('$best_dev') else 1)"; then
    best_seed=$seed best_dev=$dev
  fi
done
echo "best on dev: seed $best_seed ($best_dev%)" | tee -a "$out/accuracy.txt"
