#!/usr/bin/env bash
# Bundle what the GPU checks (test/device/run.sh) need on a machine that
# has CUDA, cuBLAS and cuDNN (here: inside PyTorch's Python packages) but
# not Debian's MPI, HDF5, libconfig, OpenBLAS, jansson, libpng or libjpeg:
# a CUDA build for sm_90 (build-device/; without libmvec, whose glibc
# version the target may lack) and, packed with xz in
# .device/bundle.tar.xz, its programs and the shared libraries they load
# that are not CUDA's and not the C library's (the device tool carries
# 64 MiB at most; OpenBLAS alone is 35 MiB unpacked).
#   bash jobs/device-bundle.sh            then name .device in the run's carry
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-device/bundle
bash "$root/jobs/build.sh" "$root/build-device" -DAESNET_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DAESNET_NATIVE=OFF -DAESNET_MVEC=OFF
rm -rf "$out"; mkdir -p "$out/bin" "$out/lib"
progs=("$root/build-device/aesnet" "$root/build-device/test/test_gpu_layers" "$root/build-device/test/bench_model")
cp "${progs[@]}" "$out/bin/"
# Debian's libraries behind the programs, not the ones the target has
# (glibc, the C++ runtime, the CUDA driver and toolkit libraries).
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libmvec\.|libdl\.|libpthread\.|librt\.|libgcc_s|libstdc\+\+|libcuda\.|libcudart|libcublas|libcudnn|libnvrtc|libnvJitLink)'
for p in "${progs[@]}" "$(command -v orterun)" "$(command -v orted)"; do
  ldd "$p" | awk '$3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] || cp -L "$path" "$out/lib/$name"
done
# Open MPI and PMIx open their components at run time from their own
# prefixes: bundle them (test/device/env.sh points MCA there), with the
# help texts, and the libraries the components link to that the program
# does not already pull in.
comp=$(dirname "$(find /usr/lib -name mca_shmem_mmap.so -path '*openmpi*' 2>/dev/null | head -1)")
mkdir -p "$out/lib/openmpi3" "$out/lib/pmix" "$out/share/openmpi"
cp -L "$comp"/*.so "$out/lib/openmpi3/"
cp -L "$(dirname "$comp")"/libmca_common_*.so.* "$out/lib/" 2>/dev/null || true
pmixdir=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libpmix\.so\.2 / { print $NF; exit }')")")
cp -L "$pmixdir"/pmix/*.so "$out/lib/pmix/" 2>/dev/null || true
cp -L "$pmixdir"/libpmix.so.2 "$out/lib/" 2>/dev/null || true
cp /usr/share/openmpi/*.txt "$out/share/openmpi/" 2>/dev/null || true
# mpirun and its per-node daemon, for two ranks on one GPU
cp -L "$(command -v orterun)" "$out/bin/mpirun" && cp -L "$(command -v orted)" "$out/bin/orted"
strip --strip-unneeded "$out/bin/"* "$out/lib/"*.so* "$out/lib/"*/*.so 2>/dev/null || true
mkdir -p "$root/.device"
tar -C "$out" -cJf "$root/.device/bundle.tar.xz" bin lib share
size=$(du -sm "$root/.device/bundle.tar.xz" | cut -f1)
echo "bundle: .device/bundle.tar.xz, ${size} MiB packed, $(du -sm "$out" | cut -f1) MiB unpacked ($(ls "$out/lib" | wc -l) libraries)"
[ "$size" -le 48 ] || { echo "bundle over 48 MiB packed: trim it before it can travel" >&2; exit 1; }
