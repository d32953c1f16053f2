#!/usr/bin/env bash
# Installs what aesnet needs on Debian 12 (as root): compilers, CMake, Open MPI,
# parallel HDF5, libconfig, OpenBLAS, libjpeg-turbo, libpng, jansson, and the
# Python packages the tests and analysis use (numpy, h5py, PIL, PyTorch);
# with --test also Slurm and munge, for the test that runs jobs/ under a
# single-node Slurm it starts itself.
# Idempotent: packages already present are left alone. CUDA is not installed
# here: where the CUDA toolkit is in /usr/local/cuda (or nvcc is on PATH) the
# build picks it up.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev libconfig-dev libopenblas-dev
      libjpeg62-turbo-dev libpng-dev libjansson-dev
      python3 python3-numpy python3-h5py python3-matplotlib)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3 python3-numpy python3-h5py python3-pil python3-torch python3-scipy python3-matplotlib
        slurm-wlm munge)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
