/*
 * The aesnet-dataset HDF5 file: writer (temporary name, rename at the end)
 * and validating reader. The layout is documented in docs/dataset-format.md;
 * keep the two in step.
 */
#define _GNU_SOURCE
#include "aesnet/dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aesnet/h5.h"
#include "aesnet_build_info.h"

const char *const aes_split_names[3] = {"train", "val", "test"};

#define TOKEN_CHUNK_ROWS 16
#define META_CHUNK_ROWS 4096

/* ---- writer ---------------------------------------------------------- */

struct aes_dsw {
    char final_path[4096], tmp_path[4200];
    aes_dataset_spec spec;
    hid_t file;
    hid_t d_images, d_count, d_tokens, d_strings, d_scores, d_votes, d_split, d_labels,
        d_features;
    hid_t str_type;
    uint8_t *done; /* [N] bit 1 image, 2 text, 4 meta: every row must be complete */
};

#define WCHECK(w, call)                                                                       \
    do {                                                                                      \
        if ((call) < 0)                                                                       \
            aes_user_error("%s: cannot write the data set: %s", (w)->final_path, aes_h5_write_reason()); \
    } while (0)

static hid_t create_ds(aes_dsw *w, hid_t loc, const char *name, hid_t type, int rank,
                       const hsize_t *dims, const hsize_t *chunk, int deflate)
{
    hid_t space = H5_CHECK(H5Screate_simple(rank, dims, NULL));
    hid_t dcpl = H5_CHECK(H5Pcreate(H5P_DATASET_CREATE));
    int empty = 0;
    for (int i = 0; i < rank; i++) empty |= dims[i] == 0;
    if (chunk && !empty) {
        H5_CHECK(H5Pset_chunk(dcpl, rank, chunk));
        if (deflate > 0) H5_CHECK(H5Pset_deflate(dcpl, (unsigned)deflate));
    }
    hid_t d = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    WCHECK(w, d);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

static void write_rows(aes_dsw *w, hid_t d, hid_t memtype, int rank, int64_t row,
                       const void *buf)
{
    hid_t fs = H5_CHECK(H5Dget_space(d));
    hsize_t dims[4], start[4] = {0}, count[4];
    H5_CHECK(H5Sget_simple_extent_dims(fs, dims, NULL));
    for (int i = 0; i < rank; i++) count[i] = dims[i];
    start[0] = (hsize_t)row;
    count[0] = 1;
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5_CHECK(H5Screate_simple(rank, count, NULL));
    WCHECK(w, H5Dwrite(d, memtype, ms, fs, H5P_DEFAULT, buf));
    H5Sclose(ms);
    H5Sclose(fs);
}

aes_dsw *aes_dsw_create(const char *path, const aes_dataset_spec *spec, int force)
{
    if (aes_file_exists(path) && !force)
        aes_user_error("%s: output exists (use --force to replace it)", path);
    AES_CHECK(spec->N > 0 && spec->S > 0 && spec->A >= 0);
    aes_dsw *w = aes_calloc(1, sizeof *w, "dataset writer");
    snprintf(w->final_path, sizeof w->final_path, "%s", path);
    aes_tmp_name(path, w->tmp_path, sizeof w->tmp_path);
    w->spec = *spec;
    w->done = aes_calloc((size_t)spec->N, 1, "row flags");
    const int64_t N = spec->N;
    const int S = spec->S, A = spec->A, K = spec->K, L = spec->L;

    aes_h5_lock();
    w->file = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0)
        aes_user_error("%s: cannot create the output file: %s", path, aes_h5_write_reason());
    aes_tmpfile_register(w->tmp_path);
    w->str_type = H5_CHECK(H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(w->str_type, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(w->str_type, H5T_CSET_UTF8));

    aes_h5_attr_write_str(w->file, "format", AES_DATASET_FORMAT);
    aes_h5_attr_write_i64(w->file, "format_version", AES_DATASET_VERSION);
    aes_h5_attr_write_str(w->file, "created_by", "aesnet " AESNET_VERSION " (git " AESNET_GIT_REV ")");
    aes_h5_attr_write_str(w->file, "provenance", spec->provenance ? spec->provenance : "");
    aes_h5_attr_write_i64(w->file, "n", N);
    aes_h5_attr_write_i64(w->file, "image_size", S);
    aes_h5_attr_write_i64(w->file, "num_attributes", A);
    aes_h5_attr_write_i64(w->file, "max_descriptions", K);
    aes_h5_attr_write_i64(w->file, "context_length", L);
    aes_h5_attr_write_f64(w->file, "score_min", spec->score_min);
    aes_h5_attr_write_f64(w->file, "score_max", spec->score_max);

    hsize_t idims[4] = {(hsize_t)N, (hsize_t)S, (hsize_t)S, 3};
    hsize_t ichunk[4] = {1, (hsize_t)S, (hsize_t)S, 3};
    w->d_images = create_ds(w, w->file, "images", H5T_STD_U8LE, 4, idims, ichunk, spec->compress);
    aes_h5_attr_write_str(w->d_images, "layout", "NHWC RGB uint8, one image per chunk");

    if (A > 0) {
        aes_h5_write_strings(w->file, "attributes", (const char *const *)spec->attr_names, A);
        hid_t g = H5_CHECK(H5Gcreate2(w->file, "text", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        hsize_t cdims[2] = {(hsize_t)N, (hsize_t)A};
        hsize_t cchunk[2] = {(hsize_t)(N < META_CHUNK_ROWS ? N : META_CHUNK_ROWS), (hsize_t)A};
        w->d_count = create_ds(w, g, "count", H5T_STD_U8LE, 2, cdims, cchunk, 0);
        hsize_t tdims[4] = {(hsize_t)N, (hsize_t)A, (hsize_t)K, (hsize_t)L};
        hsize_t tchunk[4] = {(hsize_t)(N < TOKEN_CHUNK_ROWS ? N : TOKEN_CHUNK_ROWS), (hsize_t)A,
                             (hsize_t)K, (hsize_t)L};
        w->d_tokens = create_ds(w, g, "tokens", H5T_STD_I32LE, 4, tdims, tchunk, 4);
        hsize_t sdims[3] = {(hsize_t)N, (hsize_t)A, (hsize_t)K};
        hsize_t schunk[3] = {(hsize_t)(N < TOKEN_CHUNK_ROWS ? N : TOKEN_CHUNK_ROWS), (hsize_t)A,
                             (hsize_t)K};
        w->d_strings = create_ds(w, g, "strings", w->str_type, 3, sdims, schunk, 0);
        H5Gclose(g);
    }
    hsize_t ndims[2] = {(hsize_t)N, AES_NBINS};
    hsize_t nchunk[2] = {(hsize_t)(N < META_CHUNK_ROWS ? N : META_CHUNK_ROWS), AES_NBINS};
    w->d_scores = create_ds(w, w->file, "scores", H5T_IEEE_F32LE, 1, ndims, nchunk, 0);
    w->d_split = create_ds(w, w->file, "split", H5T_STD_U8LE, 1, ndims, nchunk, 0);
    aes_h5_attr_write_str(w->d_split, "names", "0=train,1=val,2=test");
    if (spec->has_votes)
        w->d_votes = create_ds(w, w->file, "votes", H5T_IEEE_F32LE, 2, ndims, nchunk, 0);
    if (spec->n_classes > 0 || spec->F > 0) {
        hid_t g = H5_CHECK(H5Gcreate2(w->file, "content", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        if (spec->n_classes > 0) {
            w->d_labels = create_ds(w, g, "labels", H5T_STD_I32LE, 1, ndims, nchunk, 0);
            aes_h5_write_strings(g, "names", (const char *const *)spec->class_names,
                                 spec->n_classes);
        }
        if (spec->F > 0) {
            hsize_t fdims[2] = {(hsize_t)N, (hsize_t)spec->F};
            hsize_t fchunk[2] = {(hsize_t)(N < 256 ? N : 256), (hsize_t)spec->F};
            w->d_features = create_ds(w, g, "features", H5T_IEEE_F32LE, 2, fdims, fchunk, 0);
        }
        H5Gclose(g);
    }
    aes_h5_unlock();
    return w;
}

void aes_dsw_put_image(aes_dsw *w, int64_t i, const uint8_t *rgb)
{
    AES_CHECK(i >= 0 && i < w->spec.N);
    aes_h5_lock();
    write_rows(w, w->d_images, H5T_NATIVE_UINT8, 4, i, rgb);
    aes_h5_unlock();
    w->done[i] |= 1;
}

void aes_dsw_put_text(aes_dsw *w, int64_t i, const int32_t *tokens, const uint8_t *count,
                      const char *const *strings)
{
    AES_CHECK(i >= 0 && i < w->spec.N && w->spec.A > 0);
    const int A = w->spec.A, K = w->spec.K;
    const char **s = aes_malloc(sizeof(char *) * (size_t)(A * K), "strings");
    for (int j = 0; j < A * K; j++) s[j] = strings[j] ? strings[j] : "";
    aes_h5_lock();
    write_rows(w, w->d_tokens, H5T_NATIVE_INT32, 4, i, tokens);
    write_rows(w, w->d_count, H5T_NATIVE_UINT8, 2, i, count);
    write_rows(w, w->d_strings, w->str_type, 3, i, s);
    aes_h5_unlock();
    free(s);
    w->done[i] |= 2;
}

void aes_dsw_put_meta(aes_dsw *w, int64_t i, float score, const float *votes, int split,
                      int label, const float *feature)
{
    AES_CHECK(i >= 0 && i < w->spec.N && split >= 0 && split <= 2);
    uint8_t sp = (uint8_t)split;
    float nanv[AES_NBINS];
    for (int b = 0; b < AES_NBINS; b++) nanv[b] = NAN;
    aes_h5_lock();
    write_rows(w, w->d_scores, H5T_NATIVE_FLOAT, 1, i, &score);
    write_rows(w, w->d_split, H5T_NATIVE_UINT8, 1, i, &sp);
    if (w->spec.has_votes) write_rows(w, w->d_votes, H5T_NATIVE_FLOAT, 2, i, votes ? votes : nanv);
    if (w->spec.n_classes > 0) write_rows(w, w->d_labels, H5T_NATIVE_INT32, 1, i, &label);
    if (w->spec.F > 0) {
        AES_CHECK(feature != NULL);
        write_rows(w, w->d_features, H5T_NATIVE_FLOAT, 2, i, feature);
    }
    aes_h5_unlock();
    w->done[i] |= 4;
}

void aes_dsw_put_matrix_i32(aes_dsw *w, const char *path, const int32_t *x, int64_t rows,
                            int cols, const char *columns)
{
    aes_h5_lock();
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t space = H5_CHECK(H5Screate_simple(2, dims, NULL));
    hid_t lcpl = H5_CHECK(H5Pcreate(H5P_LINK_CREATE));
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
    hid_t d = H5Dcreate2(w->file, path, H5T_STD_I32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    WCHECK(w, d);
    WCHECK(w, H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, x));
    aes_h5_attr_write_str(d, "columns", columns);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(space);
    aes_h5_unlock();
}

static void write_tokenizer(aes_dsw *w, const aes_tokenizer *tok)
{
    hid_t g = H5_CHECK(H5Gcreate2(w->file, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    aes_h5_attr_write_str(g, "kind", "byte-level BPE");
    aes_h5_attr_write_str(g, "normalization",
                          "ASCII lower case; white space runs collapsed to one space; trimmed");
    aes_h5_attr_write_i64(g, "vocab_size", tok->vocab_size);
    aes_h5_attr_write_i64(g, "pad_id", AES_TOK_PAD);
    aes_h5_attr_write_i64(g, "sot_id", AES_TOK_SOT);
    aes_h5_attr_write_i64(g, "eot_id", AES_TOK_EOT);
    aes_h5_attr_write_i64(g, "byte_offset", AES_TOK_BYTE0);
    aes_h5_attr_write_i64(g, "first_merge_id", AES_TOK_FIRST_MERGE);
    aes_h5_attr_write_i64(g, "context_length", w->spec.L);
    hsize_t mdims[2] = {(hsize_t)tok->n_merges, 2};
    hid_t d = create_ds(w, g, "merges", H5T_STD_I32LE, 2, mdims, NULL, 0);
    if (tok->n_merges > 0)
        WCHECK(w, H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok->merges));
    H5Dclose(d);
    /* The vocabulary as byte strings: what each id stands for. */
    hid_t vt = H5_CHECK(H5Tvlen_create(H5T_NATIVE_UINT8));
    hid_t vft = H5_CHECK(H5Tvlen_create(H5T_STD_U8LE));
    hsize_t vdims[1] = {(hsize_t)tok->vocab_size};
    hid_t vd = create_ds(w, g, "vocab", vft, 1, vdims, NULL, 0);
    hvl_t *vl = aes_calloc((size_t)tok->vocab_size, sizeof(hvl_t), "vocab");
    static const char *special[3] = {"<pad>", "<|startoftext|>", "<|endoftext|>"};
    for (int v = 0; v < tok->vocab_size; v++) {
        if (v < AES_TOK_BYTE0) {
            vl[v].len = strlen(special[v]);
            vl[v].p = (void *)special[v];
        } else {
            vl[v].len = (size_t)tok->tok_len[v];
            vl[v].p = tok->tok_bytes[v];
        }
    }
    WCHECK(w, H5Dwrite(vd, vt, H5S_ALL, H5S_ALL, H5P_DEFAULT, vl));
    free(vl);
    H5Dclose(vd);
    H5Tclose(vt);
    H5Tclose(vft);
    H5Gclose(g);
}

static void close_all(aes_dsw *w)
{
    hid_t ids[] = {w->d_images, w->d_count, w->d_tokens, w->d_strings, w->d_scores,
                   w->d_votes,  w->d_split, w->d_labels, w->d_features};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (ids[k] > 0) H5Dclose(ids[k]);
    if (w->str_type > 0) H5Tclose(w->str_type);
}

void aes_dsw_finish(aes_dsw *w, const aes_tokenizer *tok, int64_t truncations)
{
    int need = 1 | 4 | (w->spec.A > 0 ? 2 : 0);
    for (int64_t i = 0; i < w->spec.N; i++)
        if ((w->done[i] & need) != need) aes_internal_error("data set row %lld was not written", (long long)i);
    aes_h5_lock();
    if (tok) write_tokenizer(w, tok);
    aes_h5_attr_write_i64(w->file, "truncations", truncations);
    aes_h5_attr_write_i64(w->file, "vocab_size", tok ? tok->vocab_size : 0);
    close_all(w);
    WCHECK(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL));
    WCHECK(w, H5Fclose(w->file));
    w->file = -1;
    aes_h5_unlock();
    if (aes_fsync_path(w->tmp_path) != 0)
        aes_user_error("%s: cannot write the data set: %s", w->final_path, strerror(errno));
    if (rename(w->tmp_path, w->final_path) != 0)
        aes_user_error("%s: cannot rename the finished file into place: %s", w->final_path,
                       strerror(errno));
    aes_tmpfile_forget(w->tmp_path);
    free(w->done);
    free(w);
}

void aes_dsw_abandon(aes_dsw *w)
{
    if (!w) return;
    aes_h5_lock();
    close_all(w);
    if (w->file >= 0) H5Fclose(w->file);
    aes_h5_unlock();
    unlink(w->tmp_path);
    aes_tmpfile_forget(w->tmp_path);
    free(w->done);
    free(w);
}

/* ---- reader ---------------------------------------------------------- */

#define BAD(ds, field, ...)                                                            \
    aes_user_error("%s: field %s: %s", (ds)->path, field, ({                            \
                       static _Thread_local char m_[512];                               \
                       snprintf(m_, sizeof m_, __VA_ARGS__);                            \
                       m_;                                                              \
                   }))

static void shape_str(int rank, const hsize_t *d, char *out, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

/* Open a data set and check its class and shape (0 in want = any). */
static hid_t open_checked(aes_dataset *ds, const char *name, H5T_class_t cls, int rank,
                          const hsize_t *want, const char *what)
{
    if (!aes_h5_exists(ds->file, name)) BAD(ds, name, "missing (expected %s)", what);
    hid_t d = H5Dopen2(ds->file, name, H5P_DEFAULT);
    if (d < 0) BAD(ds, name, "cannot open: %s", aes_h5_errmsg());
    hid_t t = H5_CHECK(H5Dget_type(d));
    hid_t s = H5_CHECK(H5Dget_space(d));
    int r = H5Sget_simple_extent_ndims(s);
    hsize_t dims[8] = {0};
    if (r > 0 && r <= 8) H5Sget_simple_extent_dims(s, dims, NULL);
    int ok = H5Tget_class(t) == cls && r == rank;
    for (int i = 0; ok && i < rank; i++) ok = want[i] == 0 || want[i] == dims[i];
    H5Tclose(t);
    H5Sclose(s);
    if (!ok) {
        char got[128];
        shape_str(r > 0 && r <= 8 ? r : 0, dims, got, sizeof got);
        BAD(ds, name, "expected %s, found shape %s", what, got);
    }
    return d;
}

static void read_all(aes_dataset *ds, const char *name, hid_t memtype, void *buf)
{
    hid_t d = H5Dopen2(ds->file, name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        BAD(ds, name, "cannot read: %s", aes_h5_errmsg());
    H5Dclose(d);
}

static int64_t need_attr_i64(aes_dataset *ds, const char *name, int64_t lo, int64_t hi)
{
    int64_t v;
    if (aes_h5_attr_read_i64(ds->file, name, &v) != 0)
        aes_user_error("%s: root attribute %s: missing or not an integer", ds->path, name);
    if (v < lo || v > hi)
        aes_user_error("%s: root attribute %s: %lld is out of range [%lld, %lld]", ds->path, name,
                       (long long)v, (long long)lo, (long long)hi);
    return v;
}

static void open_tokenizer(aes_dataset *ds)
{
    int64_t V;
    hid_t g = H5Gopen2(ds->file, "tokenizer", H5P_DEFAULT);
    if (g < 0) BAD(ds, "/tokenizer", "missing (a data set with descriptions needs its tokenizer)");
    if (aes_h5_attr_read_i64(g, "vocab_size", &V) != 0)
        BAD(ds, "/tokenizer", "attribute vocab_size missing");
    H5Gclose(g);
    hsize_t want[2] = {0, 2};
    hid_t d = open_checked(ds, "tokenizer/merges", H5T_INTEGER, 2, want, "int32 [M, 2]");
    hid_t s = H5_CHECK(H5Dget_space(d));
    hsize_t dims[2];
    H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s);
    int M = (int)dims[0];
    if ((int64_t)M + AES_TOK_FIRST_MERGE != V)
        BAD(ds, "/tokenizer/merges", "%d merges do not make the stored vocab_size %lld", M,
            (long long)V);
    int32_t *merges = aes_malloc(sizeof(int32_t) * 2 * (size_t)(M ? M : 1), "merges");
    if (M > 0 && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, merges) < 0)
        BAD(ds, "/tokenizer/merges", "cannot read: %s", aes_h5_errmsg());
    H5Dclose(d);
    if (aes_tokenizer_from_merges(&ds->tok, merges, M) != 0)
        BAD(ds, "/tokenizer/merges", "corrupt merge table");
    free(merges);
    ds->has_tokenizer = 1;
}

void aes_dataset_open(aes_dataset *ds, const char *path)
{
    memset(ds, 0, sizeof *ds);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    ds->d_images = ds->d_tokens = ds->d_strings = ds->d_features = -1;
    aes_h5_lock();
    if (!aes_file_exists(path)) aes_user_error("%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0)
        aes_user_error("%s: not an HDF5 file (expected an aesnet data set)", path);
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->file < 0) aes_user_error("%s: cannot open: %s", path, aes_h5_errmsg());
    char fmt[64];
    if (aes_h5_attr_read_str(ds->file, "format", fmt, sizeof fmt) != 0)
        aes_user_error("%s: root attribute format: missing (not an aesnet data set)", path);
    if (strcmp(fmt, AES_DATASET_FORMAT) != 0)
        aes_user_error("%s: root attribute format: '%s', expected '%s'", path, fmt,
                       AES_DATASET_FORMAT);
    int64_t ver = need_attr_i64(ds, "format_version", 1, 1000000);
    if (ver != AES_DATASET_VERSION)
        aes_user_error("%s: root attribute format_version: %lld, this aesnet reads version %d",
                       path, (long long)ver, AES_DATASET_VERSION);
    ds->N = need_attr_i64(ds, "n", 1, INT64_C(1) << 40);
    ds->S = (int)need_attr_i64(ds, "image_size", 8, 4096);
    ds->A = (int)need_attr_i64(ds, "num_attributes", 0, 64);
    ds->K = (int)need_attr_i64(ds, "max_descriptions", ds->A ? 1 : 0, 255);
    ds->L = (int)need_attr_i64(ds, "context_length", ds->A ? 2 : 0, 4096);
    if (aes_h5_attr_read_f64(ds->file, "score_min", &ds->score_min) != 0 ||
        aes_h5_attr_read_f64(ds->file, "score_max", &ds->score_max) != 0 ||
        !(ds->score_max > ds->score_min))
        aes_user_error("%s: root attributes score_min/score_max: missing or not a range", path);
    if (aes_h5_attr_read_i64(ds->file, "truncations", &ds->truncations) != 0) ds->truncations = 0;
    aes_h5_attr_read_str(ds->file, "provenance", ds->provenance, sizeof ds->provenance);
    aes_h5_attr_read_str(ds->file, "created_by", ds->created_by, sizeof ds->created_by);

    const int64_t N = ds->N;
    const hsize_t n = (hsize_t)N;
    hsize_t idims[4] = {n, (hsize_t)ds->S, (hsize_t)ds->S, 3};
    ds->d_images = open_checked(ds, "images", H5T_INTEGER, 4, idims, "uint8 [N, S, S, 3]");

    hsize_t n1[1] = {n};
    ds->scores = aes_malloc(sizeof(float) * (size_t)N, "scores");
    H5Dclose(open_checked(ds, "scores", H5T_FLOAT, 1, n1, "float32 [N]"));
    read_all(ds, "scores", H5T_NATIVE_FLOAT, ds->scores);
    for (int64_t i = 0; i < N; i++) ds->has_scores |= !isnan(ds->scores[i]);
    ds->split = aes_malloc((size_t)N, "split");
    H5Dclose(open_checked(ds, "split", H5T_INTEGER, 1, n1, "uint8 [N]"));
    read_all(ds, "split", H5T_NATIVE_UINT8, ds->split);
    for (int64_t i = 0; i < N; i++)
        if (ds->split[i] > 2)
            BAD(ds, "/split", "row %lld has value %d (expected 0 train, 1 val, 2 test)",
                (long long)i, ds->split[i]);
    if (aes_h5_exists(ds->file, "votes")) {
        hsize_t vd[2] = {n, AES_NBINS};
        H5Dclose(open_checked(ds, "votes", H5T_FLOAT, 2, vd, "float32 [N, 10]"));
        ds->votes = aes_malloc(sizeof(float) * AES_NBINS * (size_t)N, "votes");
        read_all(ds, "votes", H5T_NATIVE_FLOAT, ds->votes);
        ds->has_votes = 1;
    }
    if (aes_h5_exists(ds->file, "content/labels")) {
        H5Dclose(open_checked(ds, "content/labels", H5T_INTEGER, 1, n1, "int32 [N]"));
        ds->labels = aes_malloc(sizeof(int32_t) * (size_t)N, "labels");
        read_all(ds, "content/labels", H5T_NATIVE_INT32, ds->labels);
        int64_t nc = 0;
        ds->class_names = aes_h5_read_strings(ds->file, "content/names", &nc);
        if (!ds->class_names) BAD(ds, "/content/names", "missing (labels need their class names)");
        ds->n_classes = (int)nc;
        for (int64_t i = 0; i < N; i++)
            if (ds->labels[i] < -1 || ds->labels[i] >= ds->n_classes)
                BAD(ds, "/content/labels", "row %lld has label %d, not in [-1, %d)", (long long)i,
                    ds->labels[i], ds->n_classes);
        ds->has_labels = 1;
    }
    if (aes_h5_exists(ds->file, "content/features")) {
        hsize_t fd[2] = {n, 0};
        ds->d_features = open_checked(ds, "content/features", H5T_FLOAT, 2, fd, "float32 [N, F]");
        hid_t s = H5_CHECK(H5Dget_space(ds->d_features));
        hsize_t dims[2];
        H5Sget_simple_extent_dims(s, dims, NULL);
        H5Sclose(s);
        ds->F = (int)dims[1];
        if (ds->F < 1) BAD(ds, "/content/features", "has width 0");
    }
    if (ds->A > 0) {
        int64_t na = 0;
        ds->attr_names = aes_h5_read_strings(ds->file, "attributes", &na);
        if (!ds->attr_names || na != ds->A)
            BAD(ds, "/attributes", "expected %d attribute names (num_attributes)", ds->A);
        hsize_t cd[2] = {n, (hsize_t)ds->A};
        H5Dclose(open_checked(ds, "text/count", H5T_INTEGER, 2, cd, "uint8 [N, A]"));
        ds->count = aes_malloc((size_t)N * (size_t)ds->A, "count");
        read_all(ds, "text/count", H5T_NATIVE_UINT8, ds->count);
        for (int64_t i = 0; i < N * ds->A; i++)
            if (ds->count[i] > ds->K)
                BAD(ds, "/text/count", "row %lld has %d descriptions, more than max_descriptions %d",
                    (long long)(i / ds->A), ds->count[i], ds->K);
        hsize_t td[4] = {n, (hsize_t)ds->A, (hsize_t)ds->K, (hsize_t)ds->L};
        ds->d_tokens = open_checked(ds, "text/tokens", H5T_INTEGER, 4, td, "int32 [N, A, K, L]");
        hsize_t sd[3] = {n, (hsize_t)ds->A, (hsize_t)ds->K};
        ds->d_strings = open_checked(ds, "text/strings", H5T_STRING, 3, sd, "string [N, A, K]");
        open_tokenizer(ds);
    } else if (aes_h5_exists(ds->file, "tokenizer")) {
        open_tokenizer(ds);
    }
    int64_t V;
    if (ds->has_tokenizer && aes_h5_attr_read_i64(ds->file, "vocab_size", &V) == 0 &&
        V != ds->tok.vocab_size)
        aes_user_error("%s: root attribute vocab_size: %lld, but the tokenizer has %d", path,
                       (long long)V, ds->tok.vocab_size);
    aes_h5_unlock();
}

void aes_dataset_close(aes_dataset *ds)
{
    aes_h5_lock();
    hid_t ids[] = {ds->d_images, ds->d_tokens, ds->d_strings, ds->d_features};
    for (size_t k = 0; k < 4; k++)
        if (ids[k] > 0) H5Dclose(ids[k]);
    if (ds->file > 0) H5Fclose(ds->file);
    aes_h5_unlock();
    for (int a = 0; a < ds->A && ds->attr_names; a++) free(ds->attr_names[a]);
    for (int c = 0; c < ds->n_classes && ds->class_names; c++) free(ds->class_names[c]);
    free(ds->attr_names);
    free(ds->class_names);
    free(ds->scores);
    free(ds->votes);
    free(ds->split);
    free(ds->labels);
    free(ds->count);
    if (ds->has_tokenizer) aes_tokenizer_free(&ds->tok);
    memset(ds, 0, sizeof *ds);
}

static void read_row(aes_dataset *ds, hid_t d, const char *field, hid_t memtype, int64_t i,
                     void *buf)
{
    AES_CHECK(i >= 0 && i < ds->N && d > 0);
    aes_h5_lock();
    hid_t fs = H5_CHECK(H5Dget_space(d));
    hsize_t dims[4], start[4] = {0}, count[4];
    int rank = H5Sget_simple_extent_ndims(fs);
    H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int k = 0; k < rank; k++) count[k] = dims[k];
    start[0] = (hsize_t)i;
    count[0] = 1;
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5_CHECK(H5Screate_simple(rank, count, NULL));
    if (H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf) < 0)
        aes_user_error("%s: field %s: cannot read row %lld: %s", ds->path, field, (long long)i,
                       aes_h5_errmsg());
    H5Sclose(ms);
    H5Sclose(fs);
    aes_h5_unlock();
}

void aes_dataset_read_image(aes_dataset *ds, int64_t i, uint8_t *rgb)
{
    read_row(ds, ds->d_images, "/images", H5T_NATIVE_UINT8, i, rgb);
}

int aes_dataset_check_tokens(const aes_dataset *ds, int64_t i, const int32_t *t, aes_err *err)
{
    const int A = ds->A, K = ds->K, L = ds->L, V = ds->tok.vocab_size;
#define TOKBAD(...)                                                                          \
    do {                                                                                     \
        char m_[256];                                                                        \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                                \
        aes_err_set(err, "%s: field /text/tokens: row %lld attribute %d slot %d: %s", ds->path, \
                    (long long)i, a, k, m_);                                                 \
        return -1;                                                                           \
    } while (0)
    for (int a = 0; a < A; a++) {
        for (int k = 0; k < K; k++) {
            const int32_t *s = t + ((size_t)a * K + k) * L;
            if (k >= ds->count[i * A + a]) {
                for (int j = 0; j < L; j++)
                    if (s[j] != AES_TOK_PAD) TOKBAD("an absent description is not all <pad>");
                continue;
            }
            if (s[0] != AES_TOK_SOT) TOKBAD("does not start with <sot>");
            int eot = -1;
            for (int j = 1; j < L; j++) {
                if (s[j] < 0 || s[j] >= V) TOKBAD("id %d is outside the vocabulary of %d", s[j], V);
                if (eot < 0 && s[j] == AES_TOK_EOT) eot = j;
                else if (eot >= 0 && s[j] != AES_TOK_PAD) TOKBAD("tokens after <eot>");
            }
            if (eot < 0) TOKBAD("no <eot>");
        }
    }
#undef TOKBAD
    return 0;
}

void aes_dataset_read_tokens_raw(aes_dataset *ds, int64_t i, int32_t *tokens)
{
    read_row(ds, ds->d_tokens, "/text/tokens", H5T_NATIVE_INT32, i, tokens);
}

void aes_dataset_read_tokens(aes_dataset *ds, int64_t i, int32_t *tokens)
{
    aes_dataset_read_tokens_raw(ds, i, tokens);
    aes_err e;
    if (aes_dataset_check_tokens(ds, i, tokens, &e) != 0) aes_user_error("%s", e.msg);
}

void aes_dataset_read_feature(aes_dataset *ds, int64_t i, float *feature)
{
    read_row(ds, ds->d_features, "/content/features", H5T_NATIVE_FLOAT, i, feature);
}

char *aes_dataset_read_string(aes_dataset *ds, int64_t i, int a, int k)
{
    AES_CHECK(a >= 0 && a < ds->A && k >= 0 && k < ds->K);
    size_t n = (size_t)ds->A * (size_t)ds->K;
    char **row = aes_calloc(n, sizeof(char *), "strings");
    hid_t t = H5_CHECK(H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    read_row(ds, ds->d_strings, "/text/strings", t, i, row);
    char *out = aes_strdup(row[(size_t)a * ds->K + k] ? row[(size_t)a * ds->K + k] : "");
    aes_h5_lock();
    for (size_t j = 0; j < n; j++)
        if (row[j]) H5free_memory(row[j]);
    H5Tclose(t);
    aes_h5_unlock();
    free(row);
    return out;
}

uint64_t aes_tokens_hash(const int32_t *tokens, int L)
{
    int n = 0;
    while (n < L && tokens[n] != AES_TOK_EOT) n++;
    if (n < L) n++;
    return aes_fnv1a(tokens, sizeof(int32_t) * (size_t)n);
}

int aes_split_draw(uint64_t seed, int64_t i)
{
    aes_rng r;
    aes_rng_init(&r, aes_key(seed, 0, (uint64_t)i, AES_RNG_SPLIT));
    double u = aes_rng_uniform(&r);
    return u < 0.8 ? AES_SPLIT_TRAIN : u < 0.9 ? AES_SPLIT_VAL : AES_SPLIT_TEST;
}

int aes_encode_descriptions(const aes_tokenizer *tok, const char *const *desc,
                            const uint8_t *count, int A, int K, int L, int32_t *tokens)
{
    int truncations = 0;
    for (int a = 0; a < A; a++)
        for (int k = 0; k < K; k++) {
            int32_t *t = tokens + ((size_t)a * K + k) * L;
            if (k < count[a] && desc[(size_t)a * K + k]) {
                int tr = 0;
                aes_tokenizer_encode(tok, desc[(size_t)a * K + k], t, L, &tr);
                truncations += tr;
            } else {
                memset(t, 0, sizeof(int32_t) * (size_t)L);
            }
        }
    return truncations;
}
