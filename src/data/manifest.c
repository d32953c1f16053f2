/*
 * JSON Lines manifest reader (jansson). Two passes over the parsed lines:
 * the first fixes the attribute set and K, the second fills the rows.
 */
#define _GNU_SOURCE
#include "aesnet/manifest.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"

#define MERR(m, line, ...)                                                              \
    aes_user_error("%s:%d: %s", (m)->path, (line), ({                                   \
                       static char b_[600];                                             \
                       snprintf(b_, sizeof b_, __VA_ARGS__);                            \
                       b_;                                                              \
                   }))

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

/* Number of descriptions a value gives, or -1 if it is not a description. */
static int desc_count(json_t *v)
{
    if (json_is_null(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0 ? 1 : 0;
    if (!json_is_array(v)) return -1;
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) return -1;
        if (json_string_length(e) > 0) n++;
    }
    return n;
}

static int class_index(aes_manifest *m, const char *name)
{
    for (int c = 0; c < m->n_classes; c++)
        if (!strcmp(m->class_names[c], name)) return c;
    m->class_names = aes_realloc(m->class_names, sizeof(char *) * (size_t)(m->n_classes + 1),
                                 "class names");
    m->class_names[m->n_classes] = aes_strdup(name);
    return m->n_classes++;
}

static void parse_row(aes_manifest *m, json_t *o, int line, aes_manifest_row *r)
{
    static const char *known[] = {"image", "descriptions", "score", "split", "content", "id", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        int ok = 0;
        for (int k = 0; known[k]; k++) ok |= !strcmp(key, known[k]);
        if (!ok) MERR(m, line, "unknown field '%s' (expected image, descriptions, score, split, content, id)", key);
    }
    r->line = line;
    json_t *img = json_object_get(o, "image");
    if (!img) MERR(m, line, "field 'image' is missing");
    if (!json_is_string(img) || json_string_length(img) == 0)
        MERR(m, line, "field 'image' must be a non-empty string");
    r->image = aes_strdup(json_string_value(img));

    const int A = m->A, K = m->K;
    json_t *d = json_object_get(o, "descriptions");
    if (A == 0 && d) MERR(m, line, "field 'descriptions' is present but the first line has none");
    if (A > 0) {
        if (!d) MERR(m, line, "field 'descriptions' is missing (the first line has it)");
        if (!json_is_object(d)) MERR(m, line, "field 'descriptions' must be an object");
        json_object_foreach(d, key, v)
        {
            int found = 0;
            for (int a = 0; a < A; a++) found |= !strcmp(key, m->attr_names[a]);
            if (!found)
                MERR(m, line, "descriptions: attribute '%s' is not in the first line's set", key);
        }
        r->desc = aes_calloc((size_t)A * K, sizeof(char *), "descriptions");
        r->count = aes_calloc((size_t)A, 1, "counts");
        for (int a = 0; a < A; a++) {
            v = json_object_get(d, m->attr_names[a]);
            if (!v) MERR(m, line, "descriptions: attribute '%s' is missing", m->attr_names[a]);
            int n = desc_count(v);
            if (n < 0)
                MERR(m, line, "descriptions.%s must be a string or a list of strings",
                     m->attr_names[a]);
            if (json_is_string(v)) {
                if (n) r->desc[(size_t)a * K] = aes_strdup(json_string_value(v));
            } else if (json_is_array(v)) {
                size_t i;
                json_t *e;
                int kept = 0;
                json_array_foreach(v, i, e)
                {
                    if (json_string_length(e) == 0) continue;
                    if (kept < K) r->desc[(size_t)a * K + kept++] = aes_strdup(json_string_value(e));
                    else m->dropped++;
                }
                n = kept;
            }
            r->count[a] = (uint8_t)(n < K ? n : K);
        }
    }

    r->score = NAN;
    json_t *s = json_object_get(o, "score");
    if (s && !json_is_null(s)) {
        if (json_is_number(s)) {
            r->score = (float)json_number_value(s);
            if (!isfinite(r->score)) MERR(m, line, "field 'score' is not finite");
        } else if (json_is_array(s)) {
            if (json_array_size(s) != 10)
                MERR(m, line, "field 'score': a list must hold 10 vote counts, found %zu",
                     json_array_size(s));
            double sum = 0, mean = 0;
            for (int b = 0; b < 10; b++) {
                json_t *e = json_array_get(s, (size_t)b);
                if (!json_is_number(e) || json_number_value(e) < 0)
                    MERR(m, line, "field 'score': vote count %d is not a non-negative number", b + 1);
                r->votes[b] = (float)json_number_value(e);
                sum += r->votes[b];
                mean += (b + 1) * (double)r->votes[b];
            }
            if (sum <= 0) MERR(m, line, "field 'score': the 10 vote counts sum to zero");
            r->score = (float)(mean / sum);
            r->has_votes = 1;
            m->any_votes = 1;
        } else {
            MERR(m, line, "field 'score' must be a number or a list of 10 vote counts");
        }
        if (m->any_score == 0) m->score_lo = m->score_hi = r->score;
        if (r->score < m->score_lo) m->score_lo = r->score;
        if (r->score > m->score_hi) m->score_hi = r->score;
        m->any_score = 1;
    }

    r->split = -1;
    json_t *sp = json_object_get(o, "split");
    if (sp && !json_is_null(sp)) {
        const char *t = json_is_string(sp) ? json_string_value(sp) : "";
        for (int k = 0; k < 3; k++)
            if (!strcmp(t, aes_split_names[k])) r->split = k;
        if (r->split < 0) MERR(m, line, "field 'split' must be \"train\", \"val\" or \"test\"");
    }
    r->content = -1;
    json_t *c = json_object_get(o, "content");
    if (c && !json_is_null(c)) {
        if (!json_is_string(c) || json_string_length(c) == 0)
            MERR(m, line, "field 'content' must be a non-empty string");
        r->content = class_index(m, json_string_value(c));
    }
}

void aes_manifest_read(aes_manifest *m, const char *path, int K)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) aes_user_error("%s: cannot open the manifest: %s", path, strerror(errno));

    /* Parse every line first: the attribute set and K must be known before
     * rows are filled. */
    json_t **objs = NULL;
    int *lines = NULL;
    int64_t n = 0, cap = 0;
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    int line = 0;
    while ((len = getline(&buf, &bcap, f)) >= 0) {
        line++;
        if (blank(buf)) continue;
        json_error_t je;
        json_t *o = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        if (!o) aes_user_error("%s:%d: not valid JSON: %s", path, line, je.text);
        if (!json_is_object(o)) aes_user_error("%s:%d: expected a JSON object", path, line);
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            objs = aes_realloc(objs, sizeof(json_t *) * (size_t)cap, "manifest");
            lines = aes_realloc(lines, sizeof(int) * (size_t)cap, "manifest");
        }
        objs[n] = o;
        lines[n++] = line;
    }
    if (ferror(f)) aes_user_error("%s: read error: %s", path, strerror(errno));
    fclose(f);
    free(buf);
    if (n == 0) aes_user_error("%s: the manifest has no entries", path);

    json_t *d0 = json_object_get(objs[0], "descriptions");
    if (d0) {
        if (!json_is_object(d0) || json_object_size(d0) == 0)
            aes_user_error("%s:%d: field 'descriptions' must be a non-empty object", path, lines[0]);
        if (json_object_size(d0) > 64)
            aes_user_error("%s:%d: more than 64 attributes", path, lines[0]);
        /* jansson keeps insertion order: the attribute order is the file's. */
        m->A = (int)json_object_size(d0);
        m->attr_names = aes_calloc((size_t)m->A, sizeof(char *), "attributes");
        const char *key;
        json_t *v;
        int a = 0;
        json_object_foreach(d0, key, v) m->attr_names[a++] = aes_strdup(key);
    }
    if (m->A > 0) {
        int most = 1;
        for (int64_t i = 0; i < n; i++) {
            json_t *d = json_object_get(objs[i], "descriptions");
            const char *key;
            json_t *v;
            if (json_is_object(d)) json_object_foreach(d, key, v)
                {
                    int c = desc_count(v);
                    if (c > most) most = c;
                }
        }
        if (K <= 0 || K > 255) K = 255;
        if (most < K) K = most;
    }
    m->K = m->A > 0 ? K : 0;
    m->n = n;
    m->rows = aes_calloc((size_t)n, sizeof(aes_manifest_row), "manifest rows");
    for (int64_t i = 0; i < n; i++) {
        parse_row(m, objs[i], lines[i], &m->rows[i]);
        json_decref(objs[i]);
    }
    free(objs);
    free(lines);
}

void aes_manifest_free(aes_manifest *m)
{
    for (int64_t i = 0; i < m->n; i++) {
        aes_manifest_row *r = &m->rows[i];
        free(r->image);
        for (int j = 0; r->desc && j < m->A * m->K; j++) free(r->desc[j]);
        free(r->desc);
        free(r->count);
    }
    free(m->rows);
    for (int a = 0; a < m->A; a++) free(m->attr_names[a]);
    free(m->attr_names);
    for (int c = 0; c < m->n_classes; c++) free(m->class_names[c]);
    free(m->class_names);
    memset(m, 0, sizeof *m);
}
