#!/usr/bin/env bash
# Builds `tokenlens` with the `cuda` feature on a machine without a GPU, with the CUDA 13.0 toolkit
# taken from PyPI wheels (matching driver 580 / CUDA 13.0 on the target GPU machine).
#   bash scripts/build-cuda.sh            -> target/cuda/release/tokenlens
# Environment: CUDA_COMPUTE_CAP (default 90 = H100/H200), TOKENLENS_CUDA_VENV (default target/cuda-venv).
# The link-only libcuda stub made here is never shipped: at run time the driver's libcuda.so.1 and the
# CUDA 13 libraries (libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13,
# libcudart.so.13) must be on the library path (see docs/cuda.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${TOKENLENS_CUDA_VENV:-$root/target/cuda-venv}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
cuda_home=$("$venv/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
print(os.path.join(list(spec.submodule_search_locations)[0], "cu13") if spec else "")
PY
)
if [ -z "$cuda_home" ] || [ ! -x "$cuda_home/bin/nvcc" ]; then
  # One pinned meta-package keeps nvcc, headers and libraries in step (a lone nvidia-cuda-nvcc pulls
  # a newer nvvm whose code the 580 driver rejects); cccl provides <nv/target>.
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "cuda-toolkit[nvcc,cccl,crt,nvvm,cudart,cublas,curand,nvrtc]==13.0.2"
  cuda_home=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
fi
export CUDA_HOME=$cuda_home CUDA_PATH=$cuda_home NVCC=$cuda_home/bin/nvcc
export PATH=$cuda_home/bin:$PATH
export CUDARC_CUDA_VERSION=13000

# Unversioned names for the linker, and a link-only libcuda stub generated from cuda.h.
links=$root/target/cuda-link
mkdir -p "$links"
for lib in cublas cublasLt curand nvrtc cudart; do
  versioned=$(ls "$cuda_home/lib/lib$lib.so."* 2>/dev/null | sort | head -1)
  [ -n "$versioned" ] || { echo "build-cuda: lib$lib.so.* not found in $cuda_home/lib" >&2; exit 1; }
  ln -sf "$versioned" "$links/lib$lib.so"
done
if [ ! -f "$links/libcuda.so" ]; then
  gcc -E -P -I"$cuda_home/include" "$cuda_home/include/cuda.h" \
    | grep -oE 'CUresult( CUDAAPI)? +[A-Za-z0-9_]+ *\(' \
    | sed -E 's/CUresult( CUDAAPI)? +([A-Za-z0-9_]+) *\(/\2/' | sort -u \
    | awk '{ printf "int %s(void) { return 34; }\n", $1 }' > "$links/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$links/libcuda.so" "$links/cuda_stub.c"
fi
export LIBRARY_PATH=$links${LIBRARY_PATH:+:$LIBRARY_PATH}

cd "$root"
CARGO_TARGET_DIR=$root/target/cuda cargo build --release --features cuda "$@"
echo "$root/target/cuda/release/tokenlens"
