/*
 * The demo generator: determinism, and that the attribute values it reports
 * are visible in the pixels, judged by simple image statistics computed here
 * (mean luma, luma spread, chroma spread, Laplacian energy, hue coherence)
 * that know nothing of how the scenes are drawn; the descriptions' wording
 * and variety; the score; the content features; throughput.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aesnet/synth.h"
#include "check.h"

#define NS 600
#define S64 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- image statistics ---------------------------------------------------- */

typedef struct {
    double bright, contrast, sat, sharp, coherence;
} stats;

static stats image_stats(const uint8_t *rgb, int S)
{
    size_t N = (size_t)S * S;
    float *L = malloc(N * sizeof(float));
    double s1 = 0, s2 = 0, sat = 0, vb = 0, vr = 0;
    size_t nc = 0;
    for (size_t k = 0; k < N; k++) {
        double R = rgb[3 * k] / 255.0, G = rgb[3 * k + 1] / 255.0, B = rgb[3 * k + 2] / 255.0;
        double y = 0.299 * R + 0.587 * G + 0.114 * B;
        L[k] = (float)y;
        s1 += y, s2 += y * y;
        double mx = fmax(R, fmax(G, B)), mn = fmin(R, fmin(G, B));
        sat += mx - mn;
        /* hue direction of the colourful pixels */
        double cb = (B - y) / 1.772, cr = (R - y) / 1.402, c = sqrt(cb * cb + cr * cr);
        if (c > 0.02) vb += cb / c, vr += cr / c, nc++;
    }
    stats st;
    st.bright = s1 / N;
    st.contrast = sqrt(fmax(0, s2 / N - st.bright * st.bright));
    st.sat = sat / N;
    st.coherence = nc ? sqrt(vb * vb + vr * vr) / nc : 1.0;
    double lap = 0;
    for (int y = 1; y < S - 1; y++)
        for (int x = 1; x < S - 1; x++) {
            size_t k = (size_t)y * S + x;
            lap += fabs(4 * L[k] - L[k - 1] - L[k + 1] - L[k - S] - L[k + S]);
        }
    st.sharp = lap / ((double)(S - 2) * (S - 2));
    free(L);
    return st;
}

/* Fraction of (i in class lo, j in class hi) pairs with v[i] < v[j]. */
static double ordered_fraction(const double *v, const int *cls, int n, int lo, int hi)
{
    long good = 0, all = 0;
    for (int i = 0; i < n; i++) {
        if (cls[i] != lo) continue;
        for (int j = 0; j < n; j++) {
            if (cls[j] != hi) continue;
            all++;
            good += v[i] < v[j];
        }
    }
    return all ? (double)good / all : 0.0;
}

static double class_mean(const double *v, const int *cls, int n, int c)
{
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (cls[i] == c) s += v[i], k++;
    return k ? s / k : NAN;
}

static int contains_any(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strstr(s, *words)) return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_determinism(void)
{
    int S = 48;
    uint8_t *a = malloc(S * S * 3), *b = malloc(S * S * 3);
    aes_synth_sample ma, mb;
    for (int64_t idx = 0; idx < 20; idx++) {
        memset(&ma, 0xAB, sizeof ma);
        memset(&mb, 0xCD, sizeof mb);
        aes_synth_generate(11, idx, S, a, &ma);
        aes_synth_generate(11, idx, S, b, &mb);
        CHECK(memcmp(a, b, S * S * 3) == 0);
        CHECK(ma.content == mb.content && ma.exposure == mb.exposure && ma.focus == mb.focus);
        CHECK(ma.score == mb.score);
        for (int q = 0; q < AES_SYNTH_NATTR; q++) {
            CHECK(strcmp(ma.desc[q], mb.desc[q]) == 0);
            CHECK(ma.quality[q] == mb.quality[q]);
        }
    }
    /* other seeds and other indices give other images */
    int differ_seed = 0, differ_idx = 0;
    for (int64_t idx = 0; idx < 20; idx++) {
        aes_synth_generate(11, idx, S, a, &ma);
        aes_synth_generate(12, idx, S, b, &mb);
        differ_seed += memcmp(a, b, S * S * 3) != 0;
        aes_synth_generate(11, idx + 1000, S, b, &mb);
        differ_idx += memcmp(a, b, S * S * 3) != 0;
    }
    CHECK(differ_seed == 20);
    CHECK(differ_idx == 20);
    /* the same sample at another size is the same scene with the same meta */
    uint8_t *c = malloc(128 * 128 * 3);
    for (int64_t idx = 0; idx < 10; idx++) {
        aes_synth_generate(3, idx, S, a, &ma);
        aes_synth_generate(3, idx, 128, c, &mb);
        CHECK(ma.content == mb.content && ma.placement == mb.placement && ma.score == mb.score);
        CHECK(strcmp(ma.desc[2], mb.desc[2]) == 0);
        stats sa = image_stats(a, S), sc = image_stats(c, 128);
        CHECK_NEAR(sa.bright, sc.bright, 0.03);
    }
    /* sizes from the smallest up, odd ones included (the sanitizer build
     * checks the bounds) */
    int sizes[] = {16, 17, 31, 224, 512};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int s = sizes[i];
        uint8_t *p = malloc((size_t)s * s * 3);
        for (int64_t idx = 0; idx < 6; idx++) {
            aes_synth_generate(5, idx, s, p, &ma);
            stats st = image_stats(p, s);
            CHECK(st.bright > 0.02 && st.bright < 0.98);
        }
        free(p);
    }
    free(a);
    free(b);
    free(c);
}

typedef struct {
    int t, nt, S, n;
    uint8_t *out;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    aes_synth_sample m;
    for (int i = a->t; i < a->n; i += a->nt)
        aes_synth_generate(99, i, a->S, a->out + (size_t)i * a->S * a->S * 3, &m);
    return NULL;
}

static void test_threads(void)
{
    enum { NT = 4, N = 40, S = 40 };
    uint8_t *ser = malloc((size_t)N * S * S * 3), *par = malloc((size_t)N * S * S * 3);
    aes_synth_sample m;
    for (int i = 0; i < N; i++) aes_synth_generate(99, i, S, ser + (size_t)i * S * S * 3, &m);
    pthread_t th[NT];
    thr_arg args[NT];
    for (int t = 0; t < NT; t++) {
        args[t] = (thr_arg){t, NT, S, N, par};
        pthread_create(&th[t], NULL, thr_main, &args[t]);
    }
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    CHECK(memcmp(ser, par, (size_t)N * S * S * 3) == 0);
    free(ser);
    free(par);
}

static void test_visible_attributes(void)
{
    static double bright[NS], con[NS], sat[NS], sharp[NS], coh[NS];
    static int exposure[NS], contrast[NS], saturation[NS], focus[NS], harmony[NS];
    uint8_t *rgb = malloc(S64 * S64 * 3);
    aes_synth_sample m;
    int class_seen[AES_SYNTH_NCLASS] = {0};
    for (int i = 0; i < NS; i++) {
        aes_synth_generate(2024, i, S64, rgb, &m);
        stats st = image_stats(rgb, S64);
        bright[i] = st.bright, con[i] = st.contrast, sat[i] = st.sat, sharp[i] = st.sharp;
        exposure[i] = m.exposure, contrast[i] = m.contrast, saturation[i] = m.saturation;
        focus[i] = m.focus;
        /* hue coherence only means something where there is colour */
        harmony[i] = m.saturation >= 1 ? m.harmony : -1;
        coh[i] = st.coherence;
        CHECK(m.content >= 0 && m.content < AES_SYNTH_NCLASS);
        if (m.content >= 0 && m.content < AES_SYNTH_NCLASS) class_seen[m.content]++;
    }
    for (int c = 0; c < AES_SYNTH_NCLASS; c++) CHECK(class_seen[c] > NS / AES_SYNTH_NCLASS / 2);

    double f;
    /* exposure: mean luma */
    printf("brightness by exposure: %.3f %.3f %.3f\n", class_mean(bright, exposure, NS, 0),
           class_mean(bright, exposure, NS, 1), class_mean(bright, exposure, NS, 2));
    CHECK(class_mean(bright, exposure, NS, 0) < class_mean(bright, exposure, NS, 1));
    CHECK(class_mean(bright, exposure, NS, 1) < class_mean(bright, exposure, NS, 2));
    f = ordered_fraction(bright, exposure, NS, 0, 1);
    CHECK_MSG(f > 0.95, "under < well in %.3f of pairs", f);
    printf("  under < well: %.3f of pairs\n", f);
    f = ordered_fraction(bright, exposure, NS, 1, 2);
    CHECK_MSG(f > 0.95, "well < over in %.3f of pairs", f);
    printf("  well < over: %.3f of pairs\n", f);

    /* contrast: luma standard deviation */
    printf("luma sd by contrast: %.3f %.3f %.3f\n", class_mean(con, contrast, NS, 0),
           class_mean(con, contrast, NS, 1), class_mean(con, contrast, NS, 2));
    CHECK(class_mean(con, contrast, NS, 0) < class_mean(con, contrast, NS, 1));
    CHECK(class_mean(con, contrast, NS, 1) < class_mean(con, contrast, NS, 2));
    f = ordered_fraction(con, contrast, NS, 0, 1);
    CHECK_MSG(f > 0.95, "flat < good in %.3f of pairs", f);
    printf("  flat < good: %.3f of pairs\n", f);
    f = ordered_fraction(con, contrast, NS, 1, 2);
    CHECK_MSG(f > 0.9, "good < harsh in %.3f of pairs", f);
    printf("  good < harsh: %.3f of pairs\n", f);

    /* saturation: mean of max(r,g,b) - min(r,g,b) */
    printf("chroma spread by saturation: %.3f %.3f %.3f\n", class_mean(sat, saturation, NS, 0),
           class_mean(sat, saturation, NS, 1), class_mean(sat, saturation, NS, 2));
    CHECK(class_mean(sat, saturation, NS, 0) < class_mean(sat, saturation, NS, 1));
    CHECK(class_mean(sat, saturation, NS, 1) < class_mean(sat, saturation, NS, 2));
    f = ordered_fraction(sat, saturation, NS, 0, 1);
    CHECK_MSG(f > 0.9, "muted < moderate in %.3f of pairs", f);
    printf("  muted < moderate: %.3f of pairs\n", f);
    f = ordered_fraction(sat, saturation, NS, 1, 2);
    CHECK_MSG(f > 0.9, "moderate < over in %.3f of pairs", f);
    printf("  moderate < over: %.3f of pairs\n", f);

    /* focus: Laplacian energy, relative to the luma spread so that contrast
     * does not stand in for sharpness */
    static double rel[NS];
    for (int i = 0; i < NS; i++) rel[i] = sharp[i] / (con[i] + 1e-3);
    printf("sharpness by focus (sharp subject, all sharp, all blurred): %.3f %.3f %.3f\n",
           class_mean(rel, focus, NS, 0), class_mean(rel, focus, NS, 1), class_mean(rel, focus, NS, 2));
    CHECK(class_mean(sharp, focus, NS, 2) < 0.5 * class_mean(sharp, focus, NS, 1));
    CHECK(class_mean(rel, focus, NS, 2) < class_mean(rel, focus, NS, 0));
    CHECK(class_mean(rel, focus, NS, 0) < class_mean(rel, focus, NS, 1));
    f = ordered_fraction(rel, focus, NS, 2, 1);
    CHECK_MSG(f > 0.95, "all blurred < all sharp in %.3f of pairs", f);
    printf("  all blurred < all sharp: %.3f of pairs\n", f);

    /* harmony: analogous palettes have coherent hue directions, clashing
     * ones cancel */
    printf("hue coherence by harmony (clash, harmonious): %.3f %.3f\n", class_mean(coh, harmony, NS, 0),
           class_mean(coh, harmony, NS, 1));
    f = ordered_fraction(coh, harmony, NS, 0, 1);
    CHECK_MSG(f > 0.85, "clash < harmonious coherence in %.3f of pairs", f);
    printf("  clash < harmonious coherence: %.3f of pairs\n", f);
    free(rgb);
}

static double pearson(const double *x, const double *y, int n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) mx += x[i], my += y[i];
    mx /= n, my /= n;
    for (int i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

static void test_meta_and_text(void)
{
    static double score[NS], meanq[NS];
    uint8_t *rgb = malloc(32 * 32 * 3);
    aes_synth_sample m;
    static const char *const w_under[] = {"under", "dark", "dim", "murky", "starved", NULL};
    static const char *const w_well[] = {"well", "correctly", "properly", "nicely", "evenly", NULL};
    static const char *const w_over[] = {"over", "bright", "blown", "glaring", NULL};
    static const char *const w_flat[] = {"flat", "low", NULL};
    static const char *const w_good[] = {"good", "pleasing", "balanced", "nice", "healthy", NULL};
    static const char *const w_harsh[] = {"harsh", "stark", "hard", "too much", NULL};
    static const char *const w_muted[] = {"muted", "dull", "desaturated", "faded", "little saturation", NULL};
    static const char *const w_oversat[] = {"oversaturated", "saturation pushed", "overcooked", NULL};
    static const char *const w_clash[] = {"clash", "discordant", "jarring", "fight", NULL};
    static const char *const w_harm[] = {"harmonious", "analogous", "coherent", "blend", "unified",
                                         "neighbouring", "sit well", NULL};
    static const char *const w_centre[] = {"centre", "middle", NULL};
    static const char *const w_third[] = {"third", NULL};
    static const char *const w_edge[] = {"cut", "cropped", "chopped", NULL};
    static const char *const w_level[] = {"level", "straight", NULL};
    static const char *const w_tilt[] = {"tilt", "crooked", "slope", "slant", NULL};
    static const char *const w_sharp[] = {"sharp", "crisp", "in focus", NULL};
    static const char *const w_blur[] = {"blur", "out of focus", "out-of-focus", "soft", NULL};
    static const char *const w_clean[] = {"alone", "single", "uncluttered", "just", "lone", "clean", NULL};
    static const char *const w_some[] = {"few", "some", "couple", NULL};
    static const char *const w_clut[] = {"clutter", "many", "lots", NULL};
    int bad_kw[AES_SYNTH_NATTR] = {0}, bad_fmt = 0, bad_q = 0, bad_best = 0;
    for (int i = 0; i < NS; i++) {
        aes_synth_generate(77, i, 32, rgb, &m);
        score[i] = m.score;
        meanq[i] = 0;
        for (int a = 0; a < AES_SYNTH_NATTR; a++) {
            meanq[i] += m.quality[a] / AES_SYNTH_NATTR;
            bad_q += !(m.quality[a] >= 0.f && m.quality[a] <= 1.f);
            size_t len = strnlen(m.desc[a], AES_SYNTH_DESC_CAP);
            int fmt_ok = len > 0 && len < AES_SYNTH_DESC_CAP && m.desc[a][len - 1] != '\n' &&
                         m.desc[a][len - 1] != ' ' && !strchr(m.desc[a], '%');
            for (size_t k = 0; k < len && fmt_ok; k++)
                fmt_ok = !(m.desc[a][k] >= 'A' && m.desc[a][k] <= 'Z');
            bad_fmt += !fmt_ok;
        }
        CHECK(m.score >= 1.f && m.score <= 10.f);
        const char *d0 = m.desc[0], *d1 = m.desc[1], *d2 = m.desc[2], *d3 = m.desc[3], *d4 = m.desc[4];
        int ok0 = contains_any(d0, m.harmony ? w_harm : w_clash) &&
                  (m.saturation == 1 || contains_any(d0, m.saturation == 0 ? w_muted : w_oversat));
        int ok1 = contains_any(d1, m.exposure == 0 ? w_under : (m.exposure == 1 ? w_well : w_over)) &&
                  contains_any(d1, m.contrast == 0 ? w_flat : (m.contrast == 1 ? w_good : w_harsh));
        /* "underexposed" is not "over", "overexposed" is not "under" */
        ok1 = ok1 && !(m.exposure == 2 && strstr(d1, "under")) && !(m.exposure == 0 && strstr(d1, "over"));
        int ok2 = contains_any(d2, m.placement == 0 ? w_centre : (m.placement == 1 ? w_third : w_edge)) &&
                  contains_any(d2, m.tilt ? w_tilt : w_level);
        int ok3 = m.focus == 0 ? contains_any(d3, w_sharp) && contains_any(d3, w_blur)
                : m.focus == 1 ? contains_any(d3, w_sharp) && !strstr(d3, "blurred")
                               : contains_any(d3, w_blur) && !strstr(d3, "crisp");
        int ok4 = strstr(d4, aes_synth_class_names[m.content]) != NULL &&
                  contains_any(d4, m.clutter == 0 ? w_clean : (m.clutter == 1 ? w_some : w_clut));
        bad_kw[0] += !ok0, bad_kw[1] += !ok1, bad_kw[2] += !ok2, bad_kw[3] += !ok3, bad_kw[4] += !ok4;
        if (!(ok0 && ok1 && ok2 && ok3 && ok4) && bad_kw[0] + bad_kw[1] + bad_kw[2] + bad_kw[3] + bad_kw[4] < 5)
            fprintf(stderr, "wording: %d %d %d %d %d | %s | %s | %s | %s | %s\n", ok0, ok1, ok2, ok3, ok4,
                    d0, d1, d2, d3, d4);
        /* the best values give full quality */
        if (m.harmony == 1 && m.saturation == 1) bad_best += m.quality[0] != 1.f;
        if (m.exposure == 1 && m.contrast == 1) bad_best += m.quality[1] != 1.f;
        if (m.placement == 1 && m.tilt == 0) bad_best += m.quality[2] != 1.f;
        if (m.focus == 0) bad_best += m.quality[3] != 1.f;
        if (m.clutter == 0) bad_best += m.quality[4] != 1.f;
        if (m.focus == 2) bad_best += m.quality[3] >= 0.5f; /* all blurred is the worst */
    }
    for (int a = 0; a < AES_SYNTH_NATTR; a++)
        CHECK_MSG(bad_kw[a] == 0, "attribute %s: %d descriptions miss their value's words",
                  aes_synth_attr_names[a], bad_kw[a]);
    CHECK_MSG(bad_fmt == 0, "%d badly formed descriptions", bad_fmt);
    CHECK(bad_q == 0);
    CHECK(bad_best == 0);
    double r = pearson(score, meanq, NS);
    printf("pearson(score, mean quality) = %.3f\n", r);
    CHECK_MSG(r > 0.8, "pearson %.3f", r);
    /* the score uses its range */
    double lo = 10, hi = 1;
    for (int i = 0; i < NS; i++) lo = fmin(lo, score[i]), hi = fmax(hi, score[i]);
    CHECK(lo < 4 && hi > 8);

    CHECK(strcmp(aes_synth_attr_names[0], "color") == 0);
    CHECK(strcmp(aes_synth_attr_names[1], "light") == 0);
    CHECK(strcmp(aes_synth_attr_names[2], "composition") == 0);
    CHECK(strcmp(aes_synth_attr_names[3], "focus") == 0);
    CHECK(strcmp(aes_synth_attr_names[4], "subject") == 0);
    for (int c = 0; c < AES_SYNTH_NCLASS; c++)
        for (int d = c + 1; d < AES_SYNTH_NCLASS; d++)
            CHECK(strcmp(aes_synth_class_names[c], aes_synth_class_names[d]) != 0);
    free(rgb);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_features(void)
{
    int Fs[] = {16, 64, 512};
    for (size_t t = 0; t < sizeof Fs / sizeof Fs[0]; t++) {
        int F = Fs[t];
        enum { PER = 8 };
        float *f = malloc((size_t)AES_SYNTH_NCLASS * PER * F * sizeof(float));
        for (int c = 0; c < AES_SYNTH_NCLASS; c++)
            for (int k = 0; k < PER; k++)
                aes_synth_content_feature(4, c, c * 1000 + k, f + (size_t)(c * PER + k) * F, F);
        int bad_norm = 0;
        double same_min = 1, diff_abs = 0;
        int ndiff = 0;
        for (int i = 0; i < AES_SYNTH_NCLASS * PER; i++) {
            double nn = 0;
            for (int q = 0; q < F; q++) nn += (double)f[(size_t)i * F + q] * f[(size_t)i * F + q];
            bad_norm += fabs(sqrt(nn) - 1) > 1e-4;
            for (int j = i + 1; j < AES_SYNTH_NCLASS * PER; j++) {
                double dot = 0;
                for (int q = 0; q < F; q++) dot += (double)f[(size_t)i * F + q] * f[(size_t)j * F + q];
                if (i / PER == j / PER) same_min = fmin(same_min, dot);
                else diff_abs += fabs(dot), ndiff++;
            }
        }
        diff_abs /= ndiff;
        printf("features F=%d: same-class min cos %.4f, other-class mean |cos| %.4f\n", F, same_min, diff_abs);
        CHECK(bad_norm == 0);
        CHECK(same_min > 0.9);
        CHECK(diff_abs < 0.1);
        /* a pure function of (seed, content, index); other seeds differ */
        float *g = malloc((size_t)F * sizeof(float));
        aes_synth_content_feature(4, 2, 2000, g, F);
        CHECK(memcmp(g, f + (size_t)(2 * PER) * F, (size_t)F * sizeof(float)) == 0);
        aes_synth_content_feature(5, 2, 2000, g, F);
        double dot = 0;
        for (int q = 0; q < F; q++) dot += (double)g[q] * f[(size_t)(2 * PER) * F + q];
        CHECK(fabs(dot) < 0.9);
        free(g);
        free(f);
    }
    /* tiny widths still give unit vectors */
    float small[3];
    for (int c = 0; c < AES_SYNTH_NCLASS; c++) {
        aes_synth_content_feature(1, c, 7, small, 3);
        CHECK_NEAR(sqrt(small[0] * small[0] + small[1] * small[1] + small[2] * small[2]), 1.0, 1e-5);
    }
}

static void test_variety_and_speed(void)
{
    enum { N = 2000 };
    aes_synth_sample *m = malloc((size_t)N * sizeof *m);
    uint8_t *rgb = malloc(224 * 224 * 3);
    double t0 = now();
    for (int i = 0; i < N; i++) aes_synth_generate(1, i, 64, rgb, &m[i]);
    double t64 = now() - t0;
    t0 = now();
    aes_synth_sample tmp;
    for (int i = 0; i < 200; i++) aes_synth_generate(1, i, 224, rgb, &tmp);
    double t224 = now() - t0;
    printf("speed: %.0f images/s at 64x64, %.0f images/s at 224x224\n", N / t64, 200 / t224);

    const char **p = malloc((size_t)N * sizeof *p);
    for (int a = 0; a < AES_SYNTH_NATTR; a++) {
        for (int i = 0; i < N; i++) p[i] = m[i].desc[a];
        qsort(p, N, sizeof *p, cmp_str);
        int distinct = 1;
        for (int i = 1; i < N; i++) distinct += strcmp(p[i], p[i - 1]) != 0;
        printf("attribute %s: %d distinct descriptions in %d\n", aes_synth_attr_names[a], distinct, N);
        CHECK_MSG(distinct >= 30, "%s: %d distinct", aes_synth_attr_names[a], distinct);
    }
    free(p);
    free(m);
    free(rgb);
}

int main(void)
{
    test_determinism();
    test_threads();
    test_visible_attributes();
    test_meta_and_text();
    test_features();
    test_variety_and_speed();
    return check_report();
}
