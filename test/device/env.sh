# Sourced by the device scripts: unpack .device/bundle.tar.xz (made here
# by jobs/device-bundle.sh) into $AESNET_BUNDLE and point the loader at
# its libraries and at the machine's CUDA libraries (the toolkit's, or
# those inside PyTorch's nvidia packages).
AESNET_BUNDLE=${AESNET_BUNDLE:-/tmp/aesnet-bundle}
_stamp=$(sha256sum .device/bundle.tar.xz | cut -d' ' -f1)
if [ "$(cat "$AESNET_BUNDLE/.stamp" 2>/dev/null)" != "$_stamp" ]; then  # new or rebuilt bundle
  rm -rf "$AESNET_BUNDLE" && mkdir -p "$AESNET_BUNDLE" && tar -C "$AESNET_BUNDLE" -xJf .device/bundle.tar.xz \
    && echo "$_stamp" > "$AESNET_BUNDLE/.stamp"
fi
_site=$(python3 -c "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))" 2>/dev/null || true)
_cuda_dirs=$( { [ -n "$_site" ] && find -L "$_site/nvidia" \( -name 'libcublas.so.*' -o -name 'libcudnn.so.*' -o -name 'libcudart.so.*' -o -name 'libnvJitLink.so.*' -o -name 'libnvrtc.so.*' \) -printf '%h\n' 2>/dev/null; } | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$AESNET_BUNDLE/lib${_cuda_dirs:+:$_cuda_dirs}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Open MPI from the bundle: its components and help texts, and a
# singleton MPI_Init that starts no daemon (one rank without mpirun).
export OPAL_PREFIX="$AESNET_BUNDLE" OMPI_MCA_mca_base_component_path="$AESNET_BUNDLE/lib/openmpi3"
export PMIX_MCA_mca_base_component_path="$AESNET_BUNDLE/lib/pmix" OMPI_MCA_ess_singleton_isolated=1
export OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export AESNET_BUNDLE
