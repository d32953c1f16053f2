/* Writes named float/int tensors to an HDF5 file for the Python reference
 * tests (torch) to read with h5py: each tensor is a data set at its name. */
#ifndef AESNET_TEST_DUMP_H
#define AESNET_TEST_DUMP_H
#include <hdf5.h>
#include <stdint.h>

#include "aesnet/h5.h"

static inline hid_t dump_open(const char *path)
{
    aes_h5_init();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) aes_internal_error("cannot create %s", path);
    return f;
}

static inline void dump_any(hid_t f, const char *name, hid_t ftype, hid_t mtype, const void *x,
                            int ndim, const int *dims)
{
    hsize_t d[8];
    for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(ndim, d, NULL);
    hid_t ds = H5Dcreate2(f, name, ftype, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        aes_internal_error("cannot write %s", name);
    H5Dclose(ds);
    H5Sclose(s);
    H5Pclose(lcpl);
}

static inline void dump_f32(hid_t f, const char *name, const float *x, int ndim, const int *dims)
{
    dump_any(f, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x, ndim, dims);
}

static inline void dump_i32(hid_t f, const char *name, const int32_t *x, int ndim, const int *dims)
{
    dump_any(f, name, H5T_STD_I32LE, H5T_NATIVE_INT32, x, ndim, dims);
}

static inline void dump_close(hid_t f) { H5Fclose(f); }
#endif
