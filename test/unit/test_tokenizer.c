/*
 * Byte-level BPE tokenizer: normalisation, hand-worked merges, learning
 * against a naive recount-everything learner, encoding against a naive
 * greedy-by-rank encoder, round trips, truncation, stored merge tables,
 * concurrent encoding, and the learning time on a synthetic corpus.
 */
#include "aesnet/tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "check.h"

/* ---- independent references ---------------------------------------------- */

/* Normalisation by splitting on white space and joining with one space. */
static void ref_normalize(const char *text, char *out)
{
    size_t n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p) break;
        if (n) out[n++] = ' ';
        while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
            char c = *p++;
            out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
    }
    out[n] = 0;
}

static int ref_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* Splits normalised s into words: starts[i], lens[i]; returns the count. */
static int ref_words(const char *s, int *starts, int *lens)
{
    int nw = 0, n = (int)strlen(s);
    for (int i = 0; i < n;) {
        int b = i;
        if (s[i] == ' ') i++;
        if (ref_alnum((unsigned char)s[i]))
            while (i < n && ref_alnum((unsigned char)s[i])) i++;
        else
            i++;
        starts[nw] = b;
        lens[nw] = i - b;
        nw++;
    }
    return nw;
}

/* The rank of (l, r) by scanning the whole table; -1 if none. */
static int ref_rank(const int32_t *merges, int nm, int32_t l, int32_t r)
{
    for (int i = 0; i < nm; i++)
        if (merges[2 * i] == l && merges[2 * i + 1] == r) return i;
    return -1;
}

/* GPT-2 style: in each word, find the lowest-ranked adjacent pair, merge
 * every occurrence left to right, repeat. Returns the token count. */
static int ref_encode(const int32_t *merges, int nm, const char *text, int32_t *out)
{
    static const int MAXN = 4096;
    char *s = malloc(strlen(text) + 1);
    int *starts = malloc(MAXN * sizeof(int)), *lens = malloc(MAXN * sizeof(int));
    int32_t *w = malloc(MAXN * sizeof(int32_t));
    ref_normalize(text, s);
    int nw = ref_words(s, starts, lens), k = 0;
    for (int t = 0; t < nw; t++) {
        int m = lens[t];
        for (int i = 0; i < m; i++) w[i] = AES_TOK_BYTE0 + (unsigned char)s[starts[t] + i];
        for (;;) {
            int best = -1;
            for (int i = 0; i + 1 < m; i++) {
                int r = ref_rank(merges, nm, w[i], w[i + 1]);
                if (r >= 0 && (best < 0 || r < best)) best = r;
            }
            if (best < 0) break;
            int q = 0;
            for (int i = 0; i < m;) {
                if (i + 1 < m && w[i] == merges[2 * best] && w[i + 1] == merges[2 * best + 1]) {
                    w[q++] = AES_TOK_FIRST_MERGE + best;
                    i += 2;
                } else {
                    w[q++] = w[i++];
                }
            }
            m = q;
        }
        for (int i = 0; i < m; i++) out[k++] = w[i];
    }
    free(s);
    free(starts);
    free(lens);
    free(w);
    return k;
}

/* Recounts every pair of every word occurrence before each merge (a dense
 * count table: fine for small vocabularies). Returns the merge count. */
static int ref_learn(const char *const *texts, int n, int vocab_size, int32_t *merges)
{
    size_t cap = 1;
    for (int t = 0; t < n; t++) cap += strlen(texts[t]);
    int32_t *sym = malloc(cap * sizeof *sym);
    int *woff = malloc(cap * sizeof *woff), *wlen = malloc(cap * sizeof *wlen);
    int nsym = 0, nw = 0;
    int starts[512], lens[512];
    char buf[2048];
    for (int t = 0; t < n; t++) {
        ref_normalize(texts[t], buf);
        int k = ref_words(buf, starts, lens);
        for (int i = 0; i < k; i++) {
            woff[nw] = nsym;
            wlen[nw] = lens[i];
            for (int j = 0; j < lens[i]; j++)
                sym[nsym++] = AES_TOK_BYTE0 + (unsigned char)buf[starts[i] + j];
            nw++;
        }
    }
    int V = vocab_size;
    long *count = malloc((size_t)V * V * sizeof *count);
    int nm = 0;
    while (AES_TOK_FIRST_MERGE + nm < vocab_size) {
        memset(count, 0, (size_t)V * V * sizeof *count);
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < wlen[w]; i++)
                count[(size_t)sym[woff[w] + i] * V + sym[woff[w] + i + 1]]++;
        long best = 0;
        int bl = -1, br = -1;
        for (int l = 0; l < V; l++)
            for (int r = 0; r < V; r++)
                if (count[(size_t)l * V + r] > best) {
                    best = count[(size_t)l * V + r];
                    bl = l;
                    br = r;
                }
        if (best < 2) break;
        int32_t z = AES_TOK_FIRST_MERGE + nm;
        merges[2 * nm] = bl;
        merges[2 * nm + 1] = br;
        nm++;
        for (int w = 0; w < nw; w++) {
            int32_t *s = sym + woff[w];
            int q = 0;
            for (int i = 0; i < wlen[w];) {
                if (i + 1 < wlen[w] && s[i] == bl && s[i + 1] == br) {
                    s[q++] = z;
                    i += 2;
                } else {
                    s[q++] = s[i++];
                }
            }
            wlen[w] = q;
        }
    }
    free(count);
    free(sym);
    free(woff);
    free(wlen);
    return nm;
}

/* ---- corpora ---------------------------------------------------------------- */

static const char *const BASE_WORDS[] = {
    "the", "a", "photo", "image", "shows", "beautiful", "sharp", "blurry", "colour", "color",
    "light", "lighting", "composition", "subject", "background", "nice", "great", "poor",
    "exposure", "contrast", "focus", "detail", "sky", "water", "portrait", "landscape", "is",
    "too", "dark", "bright", "well", "done", "love", "this", "shot", "angle", "framing",
    "rule", "of", "thirds", "noise", "grain", "vivid", "dull", "warm", "cold", "tones",
    "in", "and", "with", "but", "not", "very", "really", "good", "bad", "overexposed",
    "underexposed", "f/2.8", "1/250s", "iso", "100", "2019", "café", "naïve", "große",
    "日本", "写真", "😀"};
#define N_BASE ((int)(sizeof BASE_WORDS / sizeof BASE_WORDS[0]))

static const char *const PUNCT[] = {",", ".", "!", "?", " -", ":", ";", "'s", "(", ")", "\"", "&"};
#define N_PUNCT ((int)(sizeof PUNCT / sizeof PUNCT[0]))

/* A sentence of 3-14 base words with some punctuation, upper case and odd
 * white space; caller frees. */
static char *make_sentence(aes_rng *r)
{
    char *s = malloc(1024);
    size_t n = 0;
    int nw = 3 + (int)aes_rng_below(r, 12);
    if (aes_rng_below(r, 4) == 0) s[n++] = ' ';
    for (int i = 0; i < nw; i++) {
        /* Skewed towards the first words, as real text is. */
        double u = aes_rng_uniform(r);
        const char *w = BASE_WORDS[(int)(u * u * N_BASE)];
        if (i) {
            unsigned k = (unsigned)aes_rng_below(r, 10);
            const char *ws = k == 0 ? "  " : k == 1 ? "\t" : k == 2 ? "\n " : " ";
            n += (size_t)sprintf(s + n, "%s", ws);
        }
        int upper = aes_rng_below(r, 8) == 0;
        for (const char *p = w; *p; p++)
            s[n++] = (char)(upper && *p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        if (aes_rng_below(r, 5) == 0) n += (size_t)sprintf(s + n, "%s", PUNCT[aes_rng_below(r, N_PUNCT)]);
    }
    if (aes_rng_below(r, 4) == 0) s[n++] = '\r';
    s[n] = 0;
    return s;
}

/* Random bytes 1..255 with many spaces and letters: stresses the
 * pre-tokeniser and the encoder on things no corpus showed it. */
static char *make_noise(aes_rng *r, int len)
{
    char *s = malloc((size_t)len + 1);
    for (int i = 0; i < len; i++) {
        unsigned k = (unsigned)aes_rng_below(r, 10);
        if (k < 2) s[i] = ' ';
        else if (k < 6) s[i] = (char)('a' + aes_rng_below(r, 6));
        else s[i] = (char)(1 + aes_rng_below(r, 255));
    }
    s[len] = 0;
    return s;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_normalize(void)
{
    char out[256];
    CHECK(aes_text_normalize("  Hello\t\tWORLD \n", out, sizeof out) == 11 &&
          !strcmp(out, "hello world"));
    CHECK(aes_text_normalize("", out, sizeof out) == 0 && !strcmp(out, ""));
    CHECK(aes_text_normalize(" \t\r\n ", out, sizeof out) == 0 && !strcmp(out, ""));
    CHECK(aes_text_normalize("A\r\nB", out, sizeof out) == 3 && !strcmp(out, "a b"));
    /* Non-ASCII bytes pass through: É stays upper case. */
    CHECK(aes_text_normalize("CAFÉ  Über", out, sizeof out) == strlen("cafÉ Über") &&
          !strcmp(out, "cafÉ Über"));
    /* A short buffer cuts the text, never leaving a trailing space. */
    CHECK(aes_text_normalize("ab   cd", out, 4) == 2 && !strcmp(out, "ab"));
    CHECK(aes_text_normalize("ab   cd", out, 5) == 4 && !strcmp(out, "ab c"));
    CHECK(aes_text_normalize("abc", out, 1) == 0 && out[0] == 0);

    aes_rng r;
    aes_rng_init(&r, aes_key(1, 0, 0, 0));
    char ref[256];
    int bad = 0;
    for (int i = 0; i < 500; i++) {
        char *s = i % 2 ? make_sentence(&r) : make_noise(&r, 1 + (int)aes_rng_below(&r, 120));
        size_t n = aes_text_normalize(s, out, sizeof out);
        ref_normalize(s, ref);
        if (strcmp(out, ref) || n != strlen(ref)) bad++;
        free(s);
    }
    CHECK_MSG(bad == 0, "%d texts normalised unlike the reference", bad);
}

/* With no merges every byte is a token: the pre-tokeniser and the layout. */
static void test_bytes_only(void)
{
    aes_tokenizer tok;
    CHECK(aes_tokenizer_from_merges(&tok, NULL, 0) == 0);
    CHECK(tok.vocab_size == AES_TOK_FIRST_MERGE && tok.n_merges == 0);
    CHECK(tok.tok_bytes[AES_TOK_PAD] == NULL && tok.tok_bytes[AES_TOK_EOT] == NULL);
    CHECK(tok.tok_len[AES_TOK_BYTE0 + 'x'] == 1 && tok.tok_bytes[AES_TOK_BYTE0 + 'x'][0] == 'x');
    int32_t ids[16];
    int trunc = -1;
    int n = aes_tokenizer_encode(&tok, "  Ab\tC ", ids, 16, &trunc);
    int32_t want[] = {AES_TOK_SOT, 3 + 'a', 3 + 'b', 3 + ' ', 3 + 'c', AES_TOK_EOT, 0, 0};
    CHECK(n == 6 && trunc == 0 && !memcmp(ids, want, sizeof want));
    aes_tokenizer_free(&tok);
    CHECK(tok.merges == NULL && tok.pair_table == NULL);
}

/* Worked by hand. Ids: ' ' = 35, 'a' = 100, 'b' = 101, 'c' = 102, 'd' = 103.
 * "aaab aaab": words "aaab" and " aaab"; (a,a) 4, (a,b) 2, (' ',a) 1.
 *   0: (100,100) -> 259, words 259 a b / ' ' 259 a b: (259,a) 2, (a,b) 2 ->
 *   1: (100,101) -> 260 (the smaller pair wins the tie): (259,260) 2 ->
 *   2: (259,260) -> 261, left ' ' 261 once: stop at vocab 262.
 * "ab ab cd cd": (a,b) 2, (' ',a) 1, (' ',c) 2, (c,d) 2.
 *   0: (35,102) -> 259 (smallest of three at 2); 1: (100,101) -> 260 beats
 *   (259,103) at 2; 2: (259,103) -> 261; then (' ',260) once: stop. */
static void test_hand_worked(void)
{
    aes_tokenizer tok;
    const char *t1[] = {"aaab AAAB"};
    CHECK(aes_tokenizer_learn(&tok, t1, 1, 300) == 0);
    int32_t w1[] = {100, 100, 100, 101, 259, 260};
    CHECK(tok.n_merges == 3 && tok.vocab_size == 262);
    CHECK(tok.n_merges == 3 && !memcmp(tok.merges, w1, sizeof w1));
    CHECK(tok.tok_len[261] == 4 && !memcmp(tok.tok_bytes[261], "aaab", 4));
    int32_t ids[8];
    int trunc;
    int n = aes_tokenizer_encode(&tok, "aaab aaab", ids, 8, &trunc);
    int32_t want[] = {AES_TOK_SOT, 261, 35, 261, AES_TOK_EOT, 0, 0, 0};
    CHECK(n == 5 && trunc == 0 && !memcmp(ids, want, sizeof want));
    /* "aaaa": (a,a) everywhere, left to right: 259 259, no further merge. */
    n = aes_tokenizer_encode(&tok, "aaaa", ids, 8, &trunc);
    CHECK(n == 4 && ids[1] == 259 && ids[2] == 259 && ids[3] == AES_TOK_EOT);
    /* "aaaab": 259 259 b (the a-b pair is never adjacent after rank 0). */
    n = aes_tokenizer_encode(&tok, "aaaab", ids, 8, &trunc);
    CHECK(n == 5 && ids[1] == 259 && ids[2] == 259 && ids[3] == 101);
    aes_tokenizer_free(&tok);

    /* The requested size stops learning exactly there. */
    CHECK(aes_tokenizer_learn(&tok, t1, 1, 260) == 0);
    CHECK(tok.n_merges == 1 && tok.vocab_size == 260 && tok.merges[0] == 100 && tok.merges[1] == 100);
    aes_tokenizer_free(&tok);
    CHECK(aes_tokenizer_learn(&tok, t1, 1, AES_TOK_FIRST_MERGE) == 0);
    CHECK(tok.n_merges == 0 && tok.vocab_size == AES_TOK_FIRST_MERGE);
    aes_tokenizer_free(&tok);

    const char *t2[] = {"ab ab\ncd  CD"};
    CHECK(aes_tokenizer_learn(&tok, t2, 1, 1000) == 0);
    int32_t w2[] = {35, 102, 100, 101, 259, 103};
    CHECK(tok.n_merges == 3 && tok.vocab_size == 262);
    CHECK(tok.n_merges == 3 && !memcmp(tok.merges, w2, sizeof w2));
    aes_tokenizer_free(&tok);

    /* Nothing to learn from. */
    const char *t3[] = {"", "   ", "x"};
    CHECK(aes_tokenizer_learn(&tok, t3, 3, 500) == 0);
    CHECK(tok.n_merges == 0 && tok.vocab_size == AES_TOK_FIRST_MERGE);
    aes_tokenizer_free(&tok);
    CHECK(aes_tokenizer_learn(&tok, NULL, 0, 500) == 0 && tok.n_merges == 0);
    aes_tokenizer_free(&tok);
}

typedef struct {
    char **texts;
    int n;
} corpus;

static corpus make_corpus(uint64_t seed, int n)
{
    corpus c = {malloc((size_t)n * sizeof(char *)), n};
    aes_rng r;
    aes_rng_init(&r, aes_key(seed, 0, 0, 0));
    for (int i = 0; i < n; i++) c.texts[i] = make_sentence(&r);
    return c;
}

static void free_corpus(corpus *c)
{
    for (int i = 0; i < c->n; i++) free(c->texts[i]);
    free(c->texts);
}

/* The incremental learner against recounting every pair at every step. */
static void test_learn_matches_naive(void)
{
    corpus c = make_corpus(7, 300);
    int V = 700;
    int32_t *ref = malloc(2 * (size_t)V * sizeof *ref);
    int nref = ref_learn((const char *const *)c.texts, c.n, V, ref);
    aes_tokenizer tok;
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)c.texts, (size_t)c.n, V) == 0);
    CHECK_MSG(tok.n_merges == nref, "%d merges, reference %d", tok.n_merges, nref);
    int first_diff = -1;
    for (int i = 0; i < tok.n_merges && i < nref; i++)
        if (tok.merges[2 * i] != ref[2 * i] || tok.merges[2 * i + 1] != ref[2 * i + 1]) {
            first_diff = i;
            break;
        }
    CHECK_MSG(first_diff < 0, "merge %d differs from the naive learner", first_diff);
    /* The base words are few: learning runs out of pairs before 700. */
    CHECK(tok.n_merges > 100 && tok.vocab_size == AES_TOK_FIRST_MERGE + tok.n_merges &&
          tok.vocab_size < V);
    aes_tokenizer_free(&tok);

    /* A smaller size is reached exactly, and is a prefix of the longer run. */
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)c.texts, (size_t)c.n, 400) == 0);
    CHECK(tok.vocab_size == 400 && tok.n_merges == 400 - AES_TOK_FIRST_MERGE);
    CHECK(!memcmp(tok.merges, ref, 2 * (size_t)tok.n_merges * sizeof *ref));
    aes_tokenizer_free(&tok);
    free(ref);
    free_corpus(&c);
}

static void test_encode_round_trip(void)
{
    corpus c = make_corpus(11, 2000);
    aes_tokenizer tok, again, stored;
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)c.texts, (size_t)c.n, 520) == 0);
    CHECK(aes_tokenizer_learn(&again, (const char *const *)c.texts, (size_t)c.n, 520) == 0);
    CHECK_MSG(tok.vocab_size == 520 && tok.n_merges == 520 - AES_TOK_FIRST_MERGE, "vocab %d", tok.vocab_size);
    CHECK(again.n_merges == tok.n_merges &&
          !memcmp(again.merges, tok.merges, 2 * (size_t)tok.n_merges * sizeof(int32_t)));
    CHECK(aes_tokenizer_from_merges(&stored, tok.merges, tok.n_merges) == 0);
    CHECK(stored.vocab_size == tok.vocab_size);
    int same_bytes = 1;
    for (int id = AES_TOK_BYTE0; id < tok.vocab_size; id++)
        if (stored.tok_len[id] != tok.tok_len[id] ||
            memcmp(stored.tok_bytes[id], tok.tok_bytes[id], (size_t)tok.tok_len[id]))
            same_bytes = 0;
    CHECK(same_bytes);

    const char *fixed[] = {
        "", " ", "a", "A photo of a CAT.", "f/2.8, 1/250s @ ISO 100!!!", "Café naïve große 日本の写真 😀",
        "the the the the the", "(((wow)))", "x1y2z3 42 0.5", "tab\there\nnewline\r\nend  ",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\x01\x02\x7f ~`|\\{}[]<>", "beautiful composition, but the lighting is too dark"};
    int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    aes_rng r;
    aes_rng_init(&r, aes_key(3, 0, 0, 0));
    enum { L = 512 };
    int32_t ids[L], ids2[L], refids[L], mix[2 * L];
    char norm[2048], dec[2048];
    int bad_trip = 0, bad_ref = 0, bad_stored = 0, bad_layout = 0, bad_dec = 0, n_texts = 0;
    for (int i = 0; i < nfixed + 1500; i++) {
        char *own = NULL;
        const char *s;
        if (i < nfixed) s = fixed[i];
        else if (i % 3) s = own = make_sentence(&r);
        else s = own = make_noise(&r, 1 + (int)aes_rng_below(&r, 200));
        n_texts++;
        int trunc;
        int n = aes_tokenizer_encode(&tok, s, ids, L, &trunc);
        ref_normalize(s, norm);
        size_t m = aes_tokenizer_decode(&tok, ids, L, dec, sizeof dec);
        if (trunc || m != strlen(norm) || strcmp(dec, norm)) bad_trip++;
        int k = ref_encode(tok.merges, tok.n_merges, s, refids);
        if (n != k + 2 || memcmp(ids + 1, refids, (size_t)k * sizeof *ids)) bad_ref++;
        if (ids[0] != AES_TOK_SOT || ids[n - 1] != AES_TOK_EOT) bad_layout++;
        for (int j = 1; j < n - 1; j++)
            if (ids[j] < AES_TOK_BYTE0 || ids[j] >= tok.vocab_size) bad_layout++;
        for (int j = n; j < L; j++)
            if (ids[j] != AES_TOK_PAD) bad_layout++;
        aes_tokenizer_encode(&stored, s, ids2, L, &trunc);
        if (memcmp(ids, ids2, sizeof ids)) bad_stored++;
        /* Specials sprinkled in, and ids after <eot>, change nothing. */
        int q = 0;
        mix[q++] = AES_TOK_PAD;
        for (int j = 0; j < n - 1; j++) {
            mix[q++] = ids[j];
            if (j % 3 == 0) mix[q++] = j % 2 ? AES_TOK_SOT : AES_TOK_PAD;
        }
        mix[q++] = AES_TOK_EOT;
        mix[q++] = AES_TOK_BYTE0 + 'z';
        m = aes_tokenizer_decode(&tok, mix, q, dec, sizeof dec);
        if (m != strlen(norm) || strcmp(dec, norm)) bad_dec++;
        free(own);
    }
    CHECK_MSG(bad_trip == 0, "%d of %d texts do not decode to their normalised form", bad_trip, n_texts);
    CHECK_MSG(bad_ref == 0, "%d of %d encodings differ from the naive encoder", bad_ref, n_texts);
    CHECK_MSG(bad_stored == 0, "%d encodings differ after from_merges", bad_stored);
    CHECK_MSG(bad_layout == 0, "%d misplaced special ids", bad_layout);
    CHECK_MSG(bad_dec == 0, "%d decodes disturbed by special ids", bad_dec);

    /* Learned merges compress the corpus they came from. */
    int n = aes_tokenizer_encode(&tok, "beautiful composition", ids, L, NULL);
    CHECK_MSG(n - 2 < (int)strlen("beautiful composition") / 2, "%d tokens", n - 2);

    /* Decode skips specials, stops at <eot>, and respects cap. */
    int32_t d[] = {AES_TOK_PAD, AES_TOK_SOT, 3 + 'h', AES_TOK_PAD, 3 + 'i', 99999, -5,
                   AES_TOK_EOT, 3 + 'x'};
    CHECK(aes_tokenizer_decode(&tok, d, 9, dec, sizeof dec) == 2 && !strcmp(dec, "hi"));
    CHECK(aes_tokenizer_decode(&tok, d, 9, dec, 2) == 1 && !strcmp(dec, "h"));
    CHECK(aes_tokenizer_decode(&tok, d, 9, dec, 0) == 0);
    /* cap cuts inside a token where it must. */
    n = aes_tokenizer_encode(&tok, "beautiful", ids, L, NULL);
    CHECK(n < 2 + 4 && aes_tokenizer_decode(&tok, ids, L, dec, 5) == 4 && !strcmp(dec, "beau"));

    aes_tokenizer_free(&tok);
    aes_tokenizer_free(&again);
    aes_tokenizer_free(&stored);
    free_corpus(&c);
}

static void test_truncation(void)
{
    aes_tokenizer tok;
    CHECK(aes_tokenizer_from_merges(&tok, NULL, 0) == 0);
    int32_t ids[8];
    int trunc = -1;
    int n = aes_tokenizer_encode(&tok, "The quick brown fox", ids, 8, &trunc);
    int32_t want[] = {AES_TOK_SOT, 3 + 't', 3 + 'h', 3 + 'e', 3 + ' ', 3 + 'q', 3 + 'u', AES_TOK_EOT};
    CHECK(n == 8 && trunc == 1 && !memcmp(ids, want, sizeof want));
    /* Six tokens fit exactly: not truncated. */
    n = aes_tokenizer_encode(&tok, "abc de", ids, 8, &trunc);
    CHECK(n == 8 && trunc == 0 && ids[6] == 3 + 'e' && ids[7] == AES_TOK_EOT);
    n = aes_tokenizer_encode(&tok, "hi", ids, 8, &trunc);
    int32_t want2[] = {AES_TOK_SOT, 3 + 'h', 3 + 'i', AES_TOK_EOT, 0, 0, 0, 0};
    CHECK(n == 4 && trunc == 0 && !memcmp(ids, want2, sizeof want2));
    n = aes_tokenizer_encode(&tok, "", ids, 2, &trunc);
    CHECK(n == 2 && trunc == 0 && ids[0] == AES_TOK_SOT && ids[1] == AES_TOK_EOT);
    n = aes_tokenizer_encode(&tok, "x", ids, 2, &trunc);
    CHECK(n == 2 && trunc == 1 && ids[0] == AES_TOK_SOT && ids[1] == AES_TOK_EOT);
    aes_tokenizer_free(&tok);

    /* With merges: the cut keeps the first tokens of the full encoding. */
    corpus c = make_corpus(5, 500);
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)c.texts, (size_t)c.n, 500) == 0);
    const char *s = "Beautiful composition, but the lighting is too dark and the focus is poor";
    int32_t full[128], cut[8];
    int nf = aes_tokenizer_encode(&tok, s, full, 128, &trunc);
    CHECK(trunc == 0 && nf > 8);
    n = aes_tokenizer_encode(&tok, s, cut, 8, &trunc);
    CHECK(n == 8 && trunc == 1 && !memcmp(cut, full, 7 * sizeof *cut) && cut[7] == AES_TOK_EOT);
    /* A long text (heap scratch path) matches its stack-sized prefix rule. */
    char *big = malloc(20001);
    for (int i = 0; i < 20000; i++) big[i] = "the sky "[i % 8];
    big[20000] = 0;
    int32_t *bids = malloc(20002 * sizeof *bids);
    n = aes_tokenizer_encode(&tok, big, bids, 20002, &trunc);
    char *dec = malloc(20001);
    CHECK(trunc == 0 && aes_tokenizer_decode(&tok, bids, n, dec, 20001) == 19999 &&
          !strncmp(dec, big, 19999));
    free(dec);
    free(bids);
    free(big);
    aes_tokenizer_free(&tok);
    free_corpus(&c);
}

static void test_from_merges_rejects(void)
{
    aes_tokenizer tok;
    int32_t ok[] = {100, 100, 259, 101, 35, 260};
    CHECK(aes_tokenizer_from_merges(&tok, ok, 3) == 0);
    CHECK(tok.vocab_size == 262 && tok.tok_len[261] == 4 && !memcmp(tok.tok_bytes[261], " aab", 4));
    aes_tokenizer_free(&tok);

    int32_t self[] = {100, 100, 260, 101};  /* merge 1 (id 260) uses itself */
    int32_t ahead[] = {100, 100, 101, 262}; /* refers to a later id */
    int32_t special[] = {100, AES_TOK_EOT};
    int32_t negative[] = {-1, 100};
    int32_t twice[] = {100, 101, 100, 101};
    int32_t huge[] = {100, 100, 100, 0x7fffffff};
    CHECK(aes_tokenizer_from_merges(&tok, self, 2) == -1);
    CHECK(tok.merges == NULL && tok.pair_table == NULL);
    CHECK(aes_tokenizer_from_merges(&tok, ahead, 2) == -1);
    CHECK(aes_tokenizer_from_merges(&tok, special, 1) == -1);
    CHECK(aes_tokenizer_from_merges(&tok, negative, 1) == -1);
    CHECK(aes_tokenizer_from_merges(&tok, twice, 2) == -1);
    CHECK(aes_tokenizer_from_merges(&tok, huge, 2) == -1);
    CHECK(aes_tokenizer_from_merges(&tok, ok, -1) == -1);
    /* Each token doubling its predecessor: a table no corpus can give. */
    int32_t *dbl = malloc(2 * 64 * sizeof *dbl);
    dbl[0] = dbl[1] = 100;
    for (int i = 1; i < 64; i++) dbl[2 * i] = dbl[2 * i + 1] = AES_TOK_FIRST_MERGE + i - 1;
    CHECK(aes_tokenizer_from_merges(&tok, dbl, 64) == -1);
    free(dbl);
}

/* ---- concurrent encoding ---------------------------------------------------- */

typedef struct {
    const aes_tokenizer *tok;
    char **texts;
    int n;
    int32_t *ids; /* [n, 64] */
} enc_job;

static void *enc_thread(void *arg)
{
    enc_job *j = arg;
    for (int rep = 0; rep < 5; rep++)
        for (int i = 0; i < j->n; i++) aes_tokenizer_encode(j->tok, j->texts[i], j->ids + 64 * i, 64, NULL);
    return NULL;
}

static void test_threads(void)
{
    corpus c = make_corpus(13, 400);
    aes_tokenizer tok;
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)c.texts, (size_t)c.n, 800) == 0);
    int32_t *serial = malloc((size_t)c.n * 64 * sizeof *serial);
    for (int i = 0; i < c.n; i++) aes_tokenizer_encode(&tok, c.texts[i], serial + 64 * i, 64, NULL);
    enum { T = 4 };
    pthread_t th[T];
    enc_job jobs[T];
    for (int t = 0; t < T; t++) {
        jobs[t] = (enc_job){&tok, c.texts, c.n, malloc((size_t)c.n * 64 * sizeof(int32_t))};
        pthread_create(&th[t], NULL, enc_thread, &jobs[t]);
    }
    int same = 1;
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        if (memcmp(jobs[t].ids, serial, (size_t)c.n * 64 * sizeof *serial)) same = 0;
        free(jobs[t].ids);
    }
    CHECK(same);
    free(serial);
    aes_tokenizer_free(&tok);
    free_corpus(&c);
}

/* ---- learning time ---------------------------------------------------------- */

/* A word list of made-up words (1-4 syllables); caller frees. */
static char **make_words(aes_rng *r, int nwords)
{
    static const char *const syl[] = {
        "ba", "be", "bi", "bo", "bu", "ka", "ke", "ki", "ko", "ku", "la", "le", "li", "lo", "lu",
        "ma", "me", "mi", "mo", "mu", "na", "ne", "ni", "no", "nu", "ra", "re", "ri", "ro", "ru",
        "sa", "se", "si", "so", "su", "ta", "te", "ti", "to", "tu", "th", "st", "ng", "sh", "ch",
        "ar", "er", "in", "on", "ed", "es", "ly", "al", "ou", "ea"};
    int nsyl = (int)(sizeof syl / sizeof syl[0]);
    char **words = malloc((size_t)nwords * sizeof *words);
    for (int i = 0; i < nwords; i++) {
        char w[64];
        int k = 1 + (int)aes_rng_below(r, 4), n = 0;
        for (int j = 0; j < k; j++) n += sprintf(w + n, "%s", syl[aes_rng_below(r, (uint64_t)nsyl)]);
        words[i] = aes_strdup(w);
    }
    return words;
}

/* nsent sentences of 5-15 words drawn, Zipf-like, from the list, with some
 * punctuation; returns the total length. */
static size_t make_word_corpus(aes_rng *r, char **words, int nwords, char **texts, int nsent)
{
    size_t total = 0;
    for (int i = 0; i < nsent; i++) {
        char s[512];
        int nw = 5 + (int)aes_rng_below(r, 11), n = 0;
        for (int j = 0; j < nw; j++) {
            double u = aes_rng_uniform(r);
            n += sprintf(s + n, j ? " %s" : "%s", words[(int)(nwords * u * u * u)]);
            if (aes_rng_below(r, 8) == 0) s[n++] = ",.!?"[aes_rng_below(r, 4)], s[n] = 0;
        }
        texts[i] = aes_strdup(s);
        total += (size_t)n;
    }
    return total;
}

static void free_strings(char **s, int n)
{
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

/* The same as test_learn_matches_naive on a corpus with many more distinct
 * words, so that many merges are won on ties at small counts. */
static void test_learn_matches_naive_rich(void)
{
    aes_rng r;
    aes_rng_init(&r, aes_key(19, 0, 0, 0));
    enum { NWORDS = 3000, NSENT = 1500, V = 900 };
    char **words = make_words(&r, NWORDS);
    char **texts = malloc(NSENT * sizeof *texts);
    make_word_corpus(&r, words, NWORDS, texts, NSENT);
    int32_t *ref = malloc(2 * V * sizeof *ref);
    int nref = ref_learn((const char *const *)texts, NSENT, V, ref);
    aes_tokenizer tok;
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)texts, NSENT, V) == 0);
    CHECK_MSG(tok.n_merges == nref && nref == V - AES_TOK_FIRST_MERGE, "%d merges, reference %d",
              tok.n_merges, nref);
    int first_diff = -1;
    for (int i = 0; i < tok.n_merges && i < nref; i++)
        if (tok.merges[2 * i] != ref[2 * i] || tok.merges[2 * i + 1] != ref[2 * i + 1]) {
            first_diff = i;
            break;
        }
    CHECK_MSG(first_diff < 0, "merge %d differs from the naive learner", first_diff);
    aes_tokenizer_free(&tok);
    free(ref);
    free_strings(texts, NSENT);
    free_strings(words, NWORDS);
}

/* 200k sentences from a list of 30k made-up words: rich enough to reach
 * 8192. No assertion on the time; it is printed. */
static void test_learn_time(void)
{
    enum { NWORDS = 30000, NSENT = 200000 };
    aes_rng r;
    aes_rng_init(&r, aes_key(17, 0, 0, 0));
    char **words = make_words(&r, NWORDS);
    char **texts = malloc(NSENT * sizeof *texts);
    size_t total = make_word_corpus(&r, words, NWORDS, texts, NSENT);
    aes_tokenizer tok;
    double t0 = aes_now();
    CHECK(aes_tokenizer_learn(&tok, (const char *const *)texts, NSENT, 8192) == 0);
    double dt = aes_now() - t0;
    CHECK_MSG(tok.vocab_size == 8192, "vocab %d", tok.vocab_size);
    printf("learning %d merges on %d sentences (%.1f MB): %.2f s\n", tok.n_merges, NSENT,
           (double)total / 1e6, dt);
    /* Spot-check the big tokenizer against the naive encoder. */
    int bad = 0;
    int32_t ids[256], ref[256];
    for (int i = 0; i < 200; i++) {
        int n = aes_tokenizer_encode(&tok, texts[i], ids, 256, NULL);
        int k = ref_encode(tok.merges, tok.n_merges, texts[i], ref);
        if (n != k + 2 || memcmp(ids + 1, ref, (size_t)k * sizeof *ids)) bad++;
    }
    CHECK_MSG(bad == 0, "%d of 200 encodings differ from the naive encoder", bad);
    int nenc = 0;
    t0 = aes_now();
    for (int i = 0; i < NSENT; i++, nenc++) aes_tokenizer_encode(&tok, texts[i], ids, 77, NULL);
    printf("encoding %d sentences: %.2f s\n", nenc, aes_now() - t0);
    aes_tokenizer_free(&tok);
    free_strings(texts, NSENT);
    free_strings(words, NWORDS);
}

int main(void)
{
    test_normalize();
    test_bytes_only();
    test_hand_worked();
    test_learn_matches_naive();
    test_learn_matches_naive_rich();
    test_encode_round_trip();
    test_truncation();
    test_from_merges_rejects();
    test_threads();
    test_learn_time();
    return check_report();
}
