/*
 * aesnet embed: encoder features and per-attribute image and text
 * embeddings of every row of a data set, with its split and score, into
 * one HDF5 file (format "aesnet-embeddings", docs/embed-format.md).
 * Runs on one process: the work is one forward pass per row.
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/eval.h"
#include "aesnet/h5.h"
#include "aesnet_build_info.h"
#include "cli/cli.h"

#define EMBED_FORMAT "aesnet-embeddings"
#define EMBED_BATCH 32

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet embed --ckpt C --data D --out E.h5 [options]\n"
            "\n"
            "Write, for every row of the data set D, the image encoder's features, the\n"
            "per-attribute image embeddings (without fusion) and the text embeddings of\n"
            "description 0 of each attribute, with the split and score (layout in\n"
            "docs/embed-format.md). One process (not under mpirun).\n"
            "\n"
            "  --ckpt C         a checkpoint, or 'random' with --config\n"
            "  --config CFG     the architecture for --ckpt random\n"
            "  --data D         an aesnet data set\n"
            "  --out E.h5       the output (refused if it exists, unless --force)\n"
            "  --force          replace an existing output\n");
}

static hid_t make_set(hid_t f, const char *name, hid_t type, int ndim, const hsize_t *dims)
{
    hid_t s = H5_CHECK(H5Screate_simple(ndim, dims, NULL));
    hid_t d = H5_CHECK(H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Sclose(s);
    return d;
}

/* Write mem (a dense block of shape count) at offset of d. */
static void write_slab(hid_t d, hid_t mtype, int ndim, const hsize_t *offset, const hsize_t *count,
                       const void *mem, const char *path)
{
    hid_t fs = H5_CHECK(H5Dget_space(d));
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, offset, NULL, count, NULL));
    hid_t ms = H5_CHECK(H5Screate_simple(ndim, count, NULL));
    if (H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, mem) < 0)
        aes_user_error("%s: cannot write: %s", path, aes_h5_errmsg());
    H5Sclose(ms);
    H5Sclose(fs);
}

int cmd_embed(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *ckpt = NULL, *data = NULL, *out = NULL, *config = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            if (aes_rank() <= 0) usage(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--ckpt")) ckpt = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--config")) config = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--data")) data = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--force")) force = 1;
        else aes_user_error("embed: unknown option '%s' (try --help)", a);
    }
    if (world > 1) aes_user_error("embed: runs on one process, not %d (start it without mpirun)", world);
    if (!ckpt) aes_user_error("embed: which checkpoint? (--ckpt C)");
    if (!data) aes_user_error("embed: which data set? (--data D)");
    if (!out) aes_user_error("embed: where to? (--out E.h5)");
    if (aes_file_exists(out) && !force) aes_user_error("%s: output exists (use --force to replace it)", out);

    aes_dataset ds;
    aes_dataset_open(&ds, data);
    aes_model m;
    int64_t step = -1;
    const int maxB = (int)(ds.N < EMBED_BATCH ? ds.N : EMBED_BATCH);
    aes_eval_open_model(&m, ckpt, config, &ds, maxB, &step);
    aes_embedder e;
    aes_embedder_init(&e, &m, &ds, maxB);
    const int64_t N = ds.N;
    const int A = e.A, D = e.D, Fv = e.Fv;

    char tmp[4200];
    aes_tmp_name(out, tmp, sizeof tmp);
    aes_h5_init();
    aes_h5_lock();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: cannot create the output file: %s", out, aes_h5_errmsg());
    aes_tmpfile_register(tmp);
    aes_h5_attr_write_str(f, "format", EMBED_FORMAT);
    aes_h5_attr_write_i64(f, "format_version", 1);
    aes_h5_attr_write_str(f, "created_by", "aesnet " AESNET_VERSION " (git " AESNET_GIT_REV ")");
    aes_h5_attr_write_str(f, "checkpoint", ckpt);
    aes_h5_attr_write_i64(f, "step", step);
    aes_h5_attr_write_str(f, "data", data);
    aes_h5_attr_write_i64(f, "image_size", e.R);
    aes_h5_attr_write_f64(f, "score_min", ds.score_min);
    aes_h5_attr_write_f64(f, "score_max", ds.score_max);
    hsize_t dv[2] = {(hsize_t)N, (hsize_t)Fv}, dn[1] = {(hsize_t)N};
    hsize_t de[3] = {(hsize_t)A, (hsize_t)N, (hsize_t)D}, dm[2] = {(hsize_t)A, (hsize_t)N};
    hid_t d_feat = make_set(f, "features", H5T_IEEE_F32LE, 2, dv);
    hid_t d_split = make_set(f, "split", H5T_STD_U8LE, 1, dn);
    hid_t d_score = make_set(f, "score", H5T_IEEE_F32LE, 1, dn);
    hid_t d_img = -1, d_txt = -1, d_mask = -1;
    if (A > 0) {
        d_img = make_set(f, "image_embeddings", H5T_IEEE_F32LE, 3, de);
        d_txt = make_set(f, "text_embeddings", H5T_IEEE_F32LE, 3, de);
        d_mask = make_set(f, "text_mask", H5T_STD_U8LE, 2, dm);
        aes_h5_write_strings(f, "attributes", (const char *const *)ds.attr_names, A);
    }
    hsize_t z[1] = {0};
    write_slab(d_split, H5T_NATIVE_UINT8, 1, z, dn, ds.split, out);
    write_slab(d_score, H5T_NATIVE_FLOAT, 1, z, dn, ds.scores, out);
    aes_h5_unlock();

    cli_progress pr;
    cli_progress_start(&pr, "embedding rows", N);
    for (int64_t i0 = 0; i0 < N; i0 += maxB) {
        int B = (int)(N - i0 < maxB ? N - i0 : maxB);
        aes_embedder_run(&e, i0, B);
        aes_h5_lock();
        hsize_t o2[2] = {(hsize_t)i0, 0}, c2[2] = {(hsize_t)B, (hsize_t)Fv};
        write_slab(d_feat, H5T_NATIVE_FLOAT, 2, o2, c2, e.v, out);
        if (A > 0) {
            hsize_t o3[3] = {0, (hsize_t)i0, 0}, c3[3] = {(hsize_t)A, (hsize_t)B, (hsize_t)D};
            write_slab(d_img, H5T_NATIVE_FLOAT, 3, o3, c3, e.x, out);
            write_slab(d_txt, H5T_NATIVE_FLOAT, 3, o3, c3, e.y, out);
            hsize_t om[2] = {0, (hsize_t)i0}, cm[2] = {(hsize_t)A, (hsize_t)B};
            write_slab(d_mask, H5T_NATIVE_UINT8, 2, om, cm, e.mask, out);
        }
        aes_h5_unlock();
        cli_progress_update(&pr, i0 + B);
    }
    cli_progress_end(&pr, N);

    aes_h5_lock();
    H5Dclose(d_feat);
    H5Dclose(d_split);
    H5Dclose(d_score);
    if (A > 0) {
        H5Dclose(d_img);
        H5Dclose(d_txt);
        H5Dclose(d_mask);
    }
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(f) < 0)
        aes_user_error("%s: cannot write: %s", out, aes_h5_errmsg());
    aes_h5_unlock();
    if (aes_fsync_path(tmp) != 0) aes_user_error("%s: cannot write: %s", out, strerror(errno));
    if (rename(tmp, out) != 0)
        aes_user_error("%s: cannot rename the finished file into place: %s", out, strerror(errno));
    aes_tmpfile_forget(tmp);
    aes_log("wrote %s: %lld rows, features %d, %d attributes x %d", out, (long long)N, Fv, A, D);

    aes_embedder_free(&e);
    aes_model_free(&m);
    aes_dataset_close(&ds);
    cli_mpi_finalize();
    return 0;
}
