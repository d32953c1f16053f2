/*
 * aesnet --version: code version, build type and flags, and the versions
 * of the libraries it was built with (and, where they say, runs with).
 */
#include <hdf5.h>
#include <jansson.h>
#include <jpeglib.h>
#include <libconfig.h>
#include <mpi.h>
#include <png.h>
#include <stdio.h>
#include <string.h>

#include "aesnet_build_info.h"
#include "aesnet/nn.h"
#include "cli/cli.h"

int aes_cuda_describe(char *out, size_t cap);
char *openblas_get_config(void);

int cmd_version(void)
{
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
    int len = 0;
    MPI_Get_library_version(mpi_lib, &len);
    char *nl = strchr(mpi_lib, ','); /* Open MPI appends a long build note */
    if (nl) *nl = 0;
    char cuda[256];
    aes_cuda_describe(cuda, sizeof cuda);
    printf("aesnet %s (git %s)\n", AESNET_VERSION, AESNET_GIT_REV);
    printf("build:     %s, flags: %s\n", AESNET_BUILD_TYPE, AESNET_BUILD_FLAGS);
    printf("MPI:       %s (MPI %d.%d; built with %s)\n", mpi_lib, MPI_VERSION, MPI_SUBVERSION,
           AESNET_BUILT_MPI_VERSION);
    printf("HDF5:      %u.%u.%u (parallel; built with %s)\n", maj, min, rel,
           AESNET_BUILT_HDF5_VERSION);
    printf("libconfig: %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR,
           LIBCONFIG_VER_REVISION);
    printf("BLAS:      OpenBLAS %s (%s; kernels in use: %s)\n", AESNET_BUILT_BLAS_VERSION,
           openblas_get_config(), aes_blas_core());
    printf("conv:      %s\n", conv2d_path());
    printf("CUDA:      %s (built: %s, toolkit %s)\n", cuda, AESNET_BUILD_CUDA,
           AESNET_BUILT_CUDA_VERSION);
    printf("images:    libjpeg-turbo (JPEG lib %d), libpng %s; JSON: jansson %s\n",
           JPEG_LIB_VERSION, png_get_libpng_ver(NULL), jansson_version_str());
    return 0;
}
