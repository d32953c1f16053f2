/* Runs the evaluation module on inputs from an HDF5 file (written by
 * test/py/test_eval.py with h5py) and writes its answers to another, for
 * comparison with scipy and numpy:
 *   in:  pred, truth [n] f64, mid [1]; X [n, F], y [n], lam [1] f64;
 *        Xva [m, F], yva [m] f64; q, k [r, D] f32
 *   out: metrics [5] (srcc, plcc, acc, rmse, mae); w [F], b [1] (ridge at
 *        lam); probe_w [F], probe_b, penalty [1]; recall [4] (K = 1, 2, 5, 10)
 * usage: eval_tool IN.h5 OUT.h5 */
#include <hdf5.h>
#include <stdlib.h>

#include "aesnet/eval.h"
#include "dump.h"

static void *read_all(hid_t f, const char *name, hid_t mtype, size_t esize, hsize_t *dims, int *ndim)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) aes_internal_error("no %s", name);
    hid_t s = H5Dget_space(d);
    *ndim = H5Sget_simple_extent_ndims(s);
    H5Sget_simple_extent_dims(s, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < *ndim; i++) n *= dims[i];
    void *x = malloc(esize * (n ? n : 1));
    if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) aes_internal_error("read %s", name);
    H5Sclose(s);
    H5Dclose(d);
    return x;
}

static void dump_f64(hid_t f, const char *name, const double *x, int n)
{
    dump_any(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, x, 1, &n);
}

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    aes_h5_init();
    hid_t in = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0) return 1;
    hsize_t d[4];
    int nd;
    double *pred = read_all(in, "pred", H5T_NATIVE_DOUBLE, 8, d, &nd);
    int64_t n = (int64_t)d[0];
    double *truth = read_all(in, "truth", H5T_NATIVE_DOUBLE, 8, d, &nd);
    double *mid = read_all(in, "mid", H5T_NATIVE_DOUBLE, 8, d, &nd);
    double *X = read_all(in, "X", H5T_NATIVE_DOUBLE, 8, d, &nd);
    int64_t nx = (int64_t)d[0];
    int F = (int)d[1];
    double *y = read_all(in, "y", H5T_NATIVE_DOUBLE, 8, d, &nd);
    double *lam = read_all(in, "lam", H5T_NATIVE_DOUBLE, 8, d, &nd);
    double *Xva = read_all(in, "Xva", H5T_NATIVE_DOUBLE, 8, d, &nd);
    int64_t nva = (int64_t)d[0];
    double *yva = read_all(in, "yva", H5T_NATIVE_DOUBLE, 8, d, &nd);
    float *q = read_all(in, "q", H5T_NATIVE_FLOAT, 4, d, &nd);
    int64_t nr = (int64_t)d[0];
    int D = (int)d[1];
    float *k = read_all(in, "k", H5T_NATIVE_FLOAT, 4, d, &nd);
    H5Fclose(in);

    aes_reg_metrics m;
    aes_regression_metrics(pred, truth, n, mid[0], &m);
    double met[5] = {m.srcc, m.plcc, m.acc, m.rmse, m.mae};
    aes_ridge r;
    aes_ridge_prepare(&r, X, y, nx, F);
    double *w = malloc(sizeof(double) * F), b = 0;
    if (aes_ridge_solve(&r, lam[0], w, &b) != 0) aes_internal_error("ridge solve failed");
    aes_ridge_free(&r);
    double grid[AES_RIDGE_GRID], *pw = malloc(sizeof(double) * F), pb = 0, pen = 0, vr = 0;
    aes_ridge_grid(grid);
    if (aes_ridge_probe(X, y, nx, Xva, yva, nva, F, grid, AES_RIDGE_GRID, pw, &pb, &pen, &vr) != 0)
        aes_internal_error("probe failed");
    const int Ks[4] = {1, 2, 5, 10};
    double rec[4];
    for (int i = 0; i < 4; i++) rec[i] = aes_recall_at_k(q, k, nr, D, Ks[i]);

    hid_t out = dump_open(argv[2]);
    dump_f64(out, "metrics", met, 5);
    dump_f64(out, "w", w, F);
    dump_f64(out, "b", &b, 1);
    dump_f64(out, "probe_w", pw, F);
    dump_f64(out, "probe_b", &pb, 1);
    dump_f64(out, "penalty", &pen, 1);
    dump_f64(out, "recall", rec, 4);
    dump_close(out);
    free(pred), free(truth), free(mid), free(X), free(y), free(lam), free(Xva), free(yva);
    free(q), free(k), free(w), free(pw);
    return 0;
}
