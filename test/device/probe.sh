#!/usr/bin/env bash
# What a GPU machine offers aesnet (about a minute): the GPU and driver,
# the CUDA toolkit, the cuBLAS and cuDNN libraries (the toolkit's or
# PyTorch's Python packages), glibc, MPI, CMake, and whether the bundle's
# programs find every library they need. Run from the repository root;
# writes probe.txt to $OUT when set.
set -uo pipefail
out=${OUT:-/tmp}; mkdir -p "$out"
{
  echo "== GPU";   nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  echo "== nvcc";  nvcc --version 2>&1 | tail -2
  echo "== glibc"; ldd --version 2>&1 | head -1
  echo "== MPI";   for m in mpirun mpiexec srun; do command -v $m || true; done; mpirun --version 2>&1 | head -1
  echo "== CMake"; cmake --version 2>&1 | head -1
  echo "== CPU";   nproc; free -g | head -2
  echo "== PyTorch"
  python3 -c "import torch; print(torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" 2>&1
  echo "== CUDA libraries"
  site=$(python3 -c "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))" 2>/dev/null)
  for d in /usr/local/cuda/lib64 ${site:+$site/nvidia}; do
    [ -d "$d" ] && find -L "$d" \( -name 'libcublas.so*' -o -name 'libcublasLt.so*' -o -name 'libcudnn.so*' -o -name 'libcudart.so*' \) 2>/dev/null
  done
  if [ -f .device/bundle.tar.xz ]; then
    echo "== bundle"
    source test/device/env.sh
    for p in "$AESNET_BUNDLE"/bin/*; do echo "$p:"; ldd "$p" | grep -E "not found|cudnn|cublas|cudart" ; done
  fi
} 2>&1 | tee "$out/probe.txt"
