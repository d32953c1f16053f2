/*
 * Byte-level BPE tokenizer: text normalisation, pre-tokenisation into
 * words, merge learning and rank-ordered encoding, and decoding.
 *
 * Learning counts unique words once, then keeps a count for every adjacent
 * pair and, for every pair, the list of words that may hold it. A merge
 * rewrites only the words on the merged pair's list and adjusts the counts
 * of the pairs around each rewritten spot; the best pair comes from a lazy
 * max-heap whose stale entries are dropped when popped. Encoding applies,
 * in each word, the lowest-ranked merge present first (all its occurrences
 * left to right), as GPT-2 does, using a min-heap keyed by (rank, position).
 *
 * A built tokenizer is read-only: encode and decode may run on several
 * threads at once.
 */
#include "aesnet/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

/* ---- normalisation and words ------------------------------------------- */

/* Space, tab, newline, carriage return. */
static inline int is_space(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* ASCII letters and digits, and every byte of a multi-byte UTF-8 sequence:
 * a table, since the or-chain mispredicts inside words. */
#define WB(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || \
               ((c) >= '0' && (c) <= '9') || (c) >= 0x80)
#define WB4(c) WB(c), WB((c) + 1), WB((c) + 2), WB((c) + 3)
#define WB16(c) WB4(c), WB4((c) + 4), WB4((c) + 8), WB4((c) + 12)
#define WB64(c) WB16(c), WB16((c) + 16), WB16((c) + 32), WB16((c) + 48)
static const uint8_t WORD_BYTE[256] = {WB64(0), WB64(64), WB64(128), WB64(192)};
#undef WB64
#undef WB16
#undef WB4
#undef WB

static inline int is_word_byte(unsigned c) { return WORD_BYTE[c & 0xff]; }

static inline unsigned to_lower(unsigned c) { return c + ((c - 'A' < 26u) << 5); }

size_t aes_text_normalize(const char *text, char *out, size_t cap)
{
    if (cap == 0) return 0;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    while (is_space(*p)) p++;
    for (;;) {
        unsigned c;
        for (; (c = *p) && !is_space(c); p++) {
            if (n + 1 >= cap) goto done;
            out[n++] = (char)to_lower(c);
        }
        while (is_space(*p)) p++;
        /* Room for the space, one more byte and the NUL, or stop here: a
         * cut text never ends in a space. */
        if (!*p || n + 2 >= cap) break;
        out[n++] = ' ';
    }
done:
    out[n] = 0;
    return n;
}

/* End of the word that starts at s[i] in normalised text s[0..n). */
static inline size_t word_end(const unsigned char *s, size_t i, size_t n)
{
    if (s[i] == ' ' && i + 1 < n) i++;
    if (is_word_byte(s[i])) {
        while (i < n && is_word_byte(s[i])) i++;
        return i;
    }
    return i + 1;
}

/* ---- (left, right) -> int32 hash map ----------------------------------- */

#define PAIR_EMPTY UINT64_MAX

static inline uint64_t pair_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

typedef struct {
    uint64_t *keys;
    int32_t *vals;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t n;
} pair_map;

static void pm_alloc(pair_map *m, size_t cap)
{
    m->keys = aes_malloc(cap * sizeof *m->keys, "tokenizer pair map");
    m->vals = aes_malloc(cap * sizeof *m->vals, "tokenizer pair map");
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1;
    m->n = 0;
}

static void pm_init(pair_map *m, size_t expect)
{
    size_t cap = 16;
    while (cap < 2 * expect) cap *= 2;
    pm_alloc(m, cap);
}

static void pm_free(pair_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static inline int32_t pm_get(const pair_map *m, uint64_t key)
{
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == PAIR_EMPTY) return -1;
    }
}

static void pm_grow(pair_map *m)
{
    pair_map old = *m;
    pm_alloc(m, 2 * (old.mask + 1));
    for (size_t i = 0; i <= old.mask; i++) {
        if (old.keys[i] == PAIR_EMPTY) continue;
        size_t j = mix64(old.keys[i]) & m->mask;
        while (m->keys[j] != PAIR_EMPTY) j = (j + 1) & m->mask;
        m->keys[j] = old.keys[i];
        m->vals[j] = old.vals[i];
    }
    m->n = old.n;
    pm_free(&old);
}

/* The value slot for key; inserts it with value `fresh` when absent and
 * sets *found accordingly. Keeps the load at most one half. */
static inline int32_t *pm_slot(pair_map *m, uint64_t key, int32_t fresh, int *found)
{
    if (2 * (m->n + 1) > m->mask + 1) pm_grow(m);
    size_t i = mix64(key) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *found = 1;
            return &m->vals[i];
        }
        if (m->keys[i] == PAIR_EMPTY) break;
    }
    m->keys[i] = key;
    m->vals[i] = fresh;
    m->n++;
    *found = 0;
    return &m->vals[i];
}

/* ---- building a tokenizer from its merges -------------------------------- */

typedef struct {
    pair_map ranks;  /* (left, right) -> merge index */
    uint8_t *arena;  /* byte strings of all non-special ids */
} tok_private;

/* A corrupt table could double a token's length at every merge. */
#define TOK_MAX_BYTES ((int64_t)1 << 30)

/* Takes ownership of merges (n_merges x 2). Returns 0, or -1 (and frees
 * everything) when a merge refers to an id that does not exist yet, repeats
 * an earlier pair, or the byte strings would be absurdly long. */
static int build(aes_tokenizer *tok, int32_t *merges, int n_merges)
{
    memset(tok, 0, sizeof *tok);
    if (n_merges < 0 || n_merges > INT32_MAX - AES_TOK_FIRST_MERGE) {
        free(merges);
        return -1;
    }
    int V = AES_TOK_FIRST_MERGE + n_merges;
    int *len = aes_calloc((size_t)V, sizeof *len, "tokenizer token lengths");
    int64_t total = 256;
    for (int b = 0; b < 256; b++) len[AES_TOK_BYTE0 + b] = 1;
    for (int i = 0; i < n_merges; i++) {
        int32_t l = merges[2 * i], r = merges[2 * i + 1];
        int32_t limit = AES_TOK_FIRST_MERGE + i;
        if (l < AES_TOK_BYTE0 || r < AES_TOK_BYTE0 || l >= limit || r >= limit) goto corrupt;
        int64_t n = (int64_t)len[l] + len[r];
        total += n;
        if (total > TOK_MAX_BYTES) goto corrupt;
        len[limit] = (int)n;
    }

    tok_private *priv = aes_calloc(1, sizeof *priv, "tokenizer");
    pm_init(&priv->ranks, (size_t)n_merges);
    for (int i = 0; i < n_merges; i++) {
        int found;
        pm_slot(&priv->ranks, pair_key(merges[2 * i], merges[2 * i + 1]), i, &found);
        if (found) {
            pm_free(&priv->ranks);
            free(priv);
            goto corrupt;
        }
    }
    priv->arena = aes_malloc((size_t)total, "tokenizer byte strings");
    uint8_t **bytes = aes_calloc((size_t)V, sizeof *bytes, "tokenizer byte strings");
    uint8_t *p = priv->arena;
    for (int b = 0; b < 256; b++) {
        bytes[AES_TOK_BYTE0 + b] = p;
        *p++ = (uint8_t)b;
    }
    for (int i = 0; i < n_merges; i++) {
        int32_t l = merges[2 * i], r = merges[2 * i + 1];
        bytes[AES_TOK_FIRST_MERGE + i] = p;
        memcpy(p, bytes[l], (size_t)len[l]);
        memcpy(p + len[l], bytes[r], (size_t)len[r]);
        p += len[l] + len[r];
    }

    tok->vocab_size = V;
    tok->n_merges = n_merges;
    tok->merges = merges;
    tok->tok_bytes = bytes;
    tok->tok_len = len;
    tok->pair_table = priv;
    return 0;

corrupt:
    free(len);
    free(merges);
    return -1;
}

int aes_tokenizer_from_merges(aes_tokenizer *tok, const int32_t *merges, int n_merges)
{
    if (n_merges < 0 || (n_merges > 0 && !merges)) {
        memset(tok, 0, sizeof *tok);
        return -1;
    }
    size_t n = 2 * (size_t)n_merges;
    int32_t *copy = aes_malloc(n * sizeof *copy, "tokenizer merges");
    if (n) memcpy(copy, merges, n * sizeof *copy);
    return build(tok, copy, n_merges);
}

void aes_tokenizer_free(aes_tokenizer *tok)
{
    if (!tok) return;
    tok_private *priv = tok->pair_table;
    if (priv) {
        pm_free(&priv->ranks);
        free(priv->arena);
        free(priv);
    }
    free(tok->merges);
    free(tok->tok_bytes);
    free(tok->tok_len);
    memset(tok, 0, sizeof *tok);
}

/* ---- learning: unique words and their counts ----------------------------- */

/* One slot per distinct word, self-contained so that counting a word costs
 * one cache miss: words up to 8 bytes live in the slot itself, longer ones
 * in the byte arena. A real corpus has tens of millions of words, so this
 * loop, not the merging, dominates learning. */
typedef struct {
    uint64_t hash;
    uint64_t data; /* len <= 8: the bytes, zero padded; else arena offset */
    int64_t freq;  /* 0: empty slot */
    uint32_t len;
    uint32_t pad_;
} word_slot;

typedef struct {
    word_slot *slot;
    size_t mask, n;
    uint8_t *bytes; /* words longer than 8 bytes, back to back */
    size_t nbytes, capbytes;
    size_t total_len; /* of all distinct words */
} word_set;

/* The first n (1..8) bytes at s, in memory order, zero padded; reads 8
 * bytes, so s must have 8 readable bytes (the text buffer is padded). */
static inline uint64_t load_short(const uint8_t *s, size_t n)
{
    uint64_t v;
    memcpy(&v, s, 8);
    if (n >= 8) return v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return v & ((UINT64_C(1) << (8 * n)) - 1);
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return v & ~(~UINT64_C(0) >> (8 * n));
#else
    uint8_t t[8] = {0};
    memcpy(t, s, n);
    memcpy(&v, t, 8);
    return v;
#endif
}

static inline uint64_t word_hash(const uint8_t *s, size_t n)
{
    uint64_t h = mix64(UINT64_C(0x9e3779b97f4a7c15) ^ n);
    size_t i = 0;
    for (; i + 8 < n; i += 8) h = mix64(h ^ load_short(s + i, 8));
    return mix64(h ^ load_short(s + i, n - i));
}

static void ws_rehash(word_set *ws, size_t cap)
{
    word_slot *old = ws->slot;
    size_t oldcap = old ? ws->mask + 1 : 0;
    ws->slot = aes_calloc(cap, sizeof *ws->slot, "tokenizer word table");
    ws->mask = cap - 1;
    for (size_t k = 0; k < oldcap; k++) {
        if (!old[k].freq) continue;
        size_t i = old[k].hash & ws->mask;
        while (ws->slot[i].freq) i = (i + 1) & ws->mask;
        ws->slot[i] = old[k];
    }
    free(old);
}

/* A new word in empty slot i. */
static void ws_insert(word_set *ws, size_t i, const uint8_t *s, size_t n, uint64_t h, uint64_t v)
{
    if (n > INT32_MAX) aes_internal_error("tokenizer: a word of %zu bytes", n);
    if (ws->n >= INT32_MAX) aes_internal_error("tokenizer: too many distinct words");
    if (n > 8) {
        if (ws->nbytes + n > ws->capbytes) {
            while (ws->nbytes + n > ws->capbytes) ws->capbytes = ws->capbytes ? 2 * ws->capbytes : 65536;
            ws->bytes = aes_realloc(ws->bytes, ws->capbytes, "tokenizer word bytes");
        }
        memcpy(ws->bytes + ws->nbytes, s, n);
        v = ws->nbytes;
        ws->nbytes += n;
    }
    ws->slot[i] = (word_slot){h, v, 1, (uint32_t)n, 0};
    ws->n++;
    ws->total_len += n;
    if (2 * ws->n > ws->mask + 1) ws_rehash(ws, 2 * (ws->mask + 1));
}

/* Counts the word s[0..n) with hash h; v is its load_short when n <= 8. */
static inline void ws_add(word_set *ws, const uint8_t *s, size_t n, uint64_t h, uint64_t v)
{
    size_t i = h & ws->mask;
    for (;; i = (i + 1) & ws->mask) {
        word_slot *e = &ws->slot[i];
        if (!e->freq) break;
        if (e->hash != h || e->len != n) continue;
        if (n <= 8 ? e->data == v : !memcmp(ws->bytes + e->data, s, n)) {
            e->freq++;
            return;
        }
    }
    ws_insert(ws, i, s, n, h, v);
}

/* The bytes of the word in slot e. */
static inline const uint8_t *ws_bytes(const word_set *ws, const word_slot *e)
{
    return e->len <= 8 ? (const uint8_t *)&e->data : ws->bytes + e->data;
}

static void ws_free(word_set *ws)
{
    free(ws->slot);
    free(ws->bytes);
    memset(ws, 0, sizeof *ws);
}

typedef struct {
    const uint8_t *s;
    size_t n;
    uint64_t hash, v;
} word_ref;

/* Looking the words up a batch at a time, their slots prefetched first,
 * overlaps the cache misses of a table too big for the cache. */
#define WORD_BATCH 32

static void ws_add_batch(word_set *ws, const word_ref *batch, int nb)
{
    for (int k = 0; k < nb; k++) ws_add(ws, batch[k].s, batch[k].n, batch[k].hash, batch[k].v);
}

/* Every word of every normalised text; one-byte words hold no pair and are
 * left out. */
static void count_words(word_set *ws, const char *const *texts, size_t n)
{
    memset(ws, 0, sizeof *ws);
    ws_rehash(ws, 4096);
    /* 8 bytes of slack for load_short; zeroed so that nothing read is
     * uninitialised. */
    size_t capbuf = 256;
    char *buf = aes_calloc(capbuf + 8, 1, "tokenizer text buffer");
    word_ref batch[WORD_BATCH];
    for (size_t t = 0; t < n; t++) {
        const char *text = texts[t];
        if (!text) continue;
        size_t need = strlen(text) + 1;
        if (need > capbuf) {
            while (capbuf < need) capbuf *= 2;
            free(buf);
            buf = aes_calloc(capbuf + 8, 1, "tokenizer text buffer");
        }
        size_t m = aes_text_normalize(text, buf, capbuf);
        const uint8_t *s = (const uint8_t *)buf;
        int nb = 0;
        for (size_t i = 0; i < m;) {
            size_t j = word_end(s, i, m);
            if (j - i > 1) {
                uint64_t h = word_hash(s + i, j - i);
#if defined(__GNUC__)
                __builtin_prefetch(&ws->slot[h & ws->mask]);
#endif
                batch[nb++] = (word_ref){s + i, j - i, h, j - i <= 8 ? load_short(s + i, j - i) : 0};
                if (nb == WORD_BATCH) {
                    ws_add_batch(ws, batch, nb);
                    nb = 0;
                }
            }
            i = j;
        }
        /* The batch points into buf: flush it before the next text. */
        ws_add_batch(ws, batch, nb);
    }
    free(buf);
}

/* ---- learning: pairs, their word lists and the lazy heap ----------------- */

typedef struct {
    int64_t count;
    int32_t left, right, pair;
} heap_entry;

typedef struct {
    /* words as symbol ids, rewritten in place by each merge */
    int32_t *sym;
    size_t *woff;
    int32_t *wlen;
    int64_t *wfreq;
    uint32_t *wstamp; /* last merge that rewrote the word */
    size_t nw;

    /* pairs */
    pair_map index; /* (left, right) -> pair */
    int32_t *pl, *pr;
    int64_t *pc;
    uint32_t *pstamp; /* last merge that changed the count */
    int32_t **pw;     /* words that may hold the pair (stale entries allowed) */
    int32_t *pwn, *pwcap;
    size_t np, capp;

    int32_t *dirty;
    size_t ndirty, capdirty;
    uint32_t stamp;

    heap_entry *heap;
    size_t nheap, capheap;
} learner;

static inline int heap_before(const heap_entry *a, const heap_entry *b)
{
    if (a->count != b->count) return a->count > b->count;
    if (a->left != b->left) return a->left < b->left;
    return a->right < b->right;
}

static void heap_push(learner *L, int32_t p)
{
    if (L->nheap == L->capheap) {
        L->capheap = L->capheap ? 2 * L->capheap : 4096;
        L->heap = aes_realloc(L->heap, L->capheap * sizeof *L->heap, "tokenizer heap");
    }
    heap_entry e = {L->pc[p], L->pl[p], L->pr[p], p};
    size_t i = L->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(&e, &L->heap[up])) break;
        L->heap[i] = L->heap[up];
        i = up;
    }
    L->heap[i] = e;
}

static heap_entry heap_pop(learner *L)
{
    heap_entry top = L->heap[0];
    heap_entry e = L->heap[--L->nheap];
    size_t n = L->nheap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&L->heap[c + 1], &L->heap[c])) c++;
        if (!heap_before(&L->heap[c], &e)) break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    if (n) L->heap[i] = e;
    return top;
}

static int32_t pair_get_or_add(learner *L, int32_t l, int32_t r)
{
    int found;
    int32_t *slot = pm_slot(&L->index, pair_key(l, r), (int32_t)L->np, &found);
    if (found) return *slot;
    if (L->np >= INT32_MAX) aes_internal_error("tokenizer: too many distinct pairs");
    if (L->np == L->capp) {
        L->capp = L->capp ? 2 * L->capp : 65536;
        L->pl = aes_realloc(L->pl, L->capp * sizeof *L->pl, "tokenizer pairs");
        L->pr = aes_realloc(L->pr, L->capp * sizeof *L->pr, "tokenizer pairs");
        L->pc = aes_realloc(L->pc, L->capp * sizeof *L->pc, "tokenizer pairs");
        L->pstamp = aes_realloc(L->pstamp, L->capp * sizeof *L->pstamp, "tokenizer pairs");
        L->pw = aes_realloc(L->pw, L->capp * sizeof *L->pw, "tokenizer pairs");
        L->pwn = aes_realloc(L->pwn, L->capp * sizeof *L->pwn, "tokenizer pairs");
        L->pwcap = aes_realloc(L->pwcap, L->capp * sizeof *L->pwcap, "tokenizer pairs");
    }
    size_t p = L->np++;
    L->pl[p] = l;
    L->pr[p] = r;
    L->pc[p] = 0;
    L->pstamp[p] = 0;
    L->pw[p] = NULL;
    L->pwn[p] = L->pwcap[p] = 0;
    return (int32_t)p;
}

static inline void pair_note_word(learner *L, int32_t p, int32_t w)
{
    int32_t n = L->pwn[p];
    if (n > 0 && L->pw[p][n - 1] == w) return;
    if (n == L->pwcap[p]) {
        if (n >= INT32_MAX / 2) aes_internal_error("tokenizer: word list overflow");
        L->pwcap[p] = n ? 2 * n : 4;
        L->pw[p] = aes_realloc(L->pw[p], (size_t)L->pwcap[p] * sizeof **L->pw, "tokenizer word lists");
    }
    L->pw[p][L->pwn[p]++] = w;
}

/* Adds delta to the count of (l, r); w >= 0 now holds the pair. */
static inline void pair_add(learner *L, int32_t l, int32_t r, int64_t delta, int32_t w)
{
    int32_t p = pair_get_or_add(L, l, r);
    L->pc[p] += delta;
    if (L->pstamp[p] != L->stamp) {
        L->pstamp[p] = L->stamp;
        if (L->ndirty == L->capdirty) {
            L->capdirty = L->capdirty ? 2 * L->capdirty : 1024;
            L->dirty = aes_realloc(L->dirty, L->capdirty * sizeof *L->dirty, "tokenizer pairs");
        }
        L->dirty[L->ndirty++] = p;
    }
    if (w >= 0) pair_note_word(L, p, w);
}

/* Rewrites word w with (a, b) -> z, left to right, adjusting the counts of
 * the pairs around each merged spot as the word changes. Pairs that do not
 * involve z were already in the word, so only z's pairs note the word. */
static void merge_word(learner *L, int32_t w, int32_t a, int32_t b, int32_t z)
{
    int32_t *s = L->sym + L->woff[w];
    int32_t n = L->wlen[w];
    int64_t f = L->wfreq[w];
    int32_t k = 0;
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            int32_t prev = k > 0 ? s[k - 1] : -1;
            int32_t next = i + 2 < n ? s[i + 2] : -1;
            if (prev >= 0) {
                pair_add(L, prev, a, -f, -1);
                pair_add(L, prev, z, f, w);
            }
            if (next >= 0) {
                pair_add(L, b, next, -f, -1);
                pair_add(L, z, next, f, w);
            }
            s[k++] = z;
            i += 2;
        } else {
            s[k++] = s[i++];
        }
    }
    L->wlen[w] = k;
}

static void learner_free(learner *L)
{
    for (size_t p = 0; p < L->np; p++) free(L->pw[p]);
    free(L->sym);
    free(L->woff);
    free(L->wlen);
    free(L->wfreq);
    free(L->wstamp);
    pm_free(&L->index);
    free(L->pl);
    free(L->pr);
    free(L->pc);
    free(L->pstamp);
    free(L->pw);
    free(L->pwn);
    free(L->pwcap);
    free(L->dirty);
    free(L->heap);
}

int aes_tokenizer_learn(aes_tokenizer *tok, const char *const *texts, size_t n, int vocab_size)
{
    if (vocab_size < AES_TOK_FIRST_MERGE)
        aes_internal_error("tokenizer: vocab_size %d below %d", vocab_size, AES_TOK_FIRST_MERGE);
    if (n > 0 && !texts) aes_internal_error("tokenizer: no texts");

    word_set ws;
    count_words(&ws, texts, n);

    learner L;
    memset(&L, 0, sizeof L);
    L.nw = ws.n;
    L.sym = aes_malloc((ws.total_len ? ws.total_len : 1) * sizeof *L.sym, "tokenizer symbols");
    L.woff = aes_malloc((ws.n ? ws.n : 1) * sizeof *L.woff, "tokenizer words");
    L.wlen = aes_malloc((ws.n ? ws.n : 1) * sizeof *L.wlen, "tokenizer words");
    L.wfreq = aes_malloc((ws.n ? ws.n : 1) * sizeof *L.wfreq, "tokenizer words");
    L.wstamp = aes_calloc(ws.n ? ws.n : 1, sizeof *L.wstamp, "tokenizer words");
    /* Table order is a function of the corpus alone; and the merges do not
     * depend on word order anyway, only on counts and the tie-break. */
    size_t nwd = 0, off = 0;
    for (size_t k = 0; k <= ws.mask; k++) {
        const word_slot *e = &ws.slot[k];
        if (!e->freq) continue;
        const uint8_t *b = ws_bytes(&ws, e);
        for (uint32_t i = 0; i < e->len; i++) L.sym[off + i] = AES_TOK_BYTE0 + b[i];
        L.woff[nwd] = off;
        L.wlen[nwd] = (int32_t)e->len;
        L.wfreq[nwd] = e->freq;
        off += e->len;
        nwd++;
    }
    ws_free(&ws);

    pm_init(&L.index, 65536);
    for (size_t w = 0; w < L.nw; w++) {
        const int32_t *s = L.sym + L.woff[w];
        for (int32_t i = 0; i + 1 < L.wlen[w]; i++) {
            int32_t p = pair_get_or_add(&L, s[i], s[i + 1]);
            L.pc[p] += L.wfreq[w];
            pair_note_word(&L, p, (int32_t)w);
        }
    }
    for (size_t p = 0; p < L.np; p++)
        if (L.pc[p] >= 2) heap_push(&L, (int32_t)p);

    int target = vocab_size - AES_TOK_FIRST_MERGE;
    int32_t *merges = NULL;
    int nm = 0, capm = 0;
    while (nm < target && L.nheap > 0) {
        heap_entry e = heap_pop(&L);
        int32_t p = e.pair;
        /* Stale: the count changed after this entry was pushed. */
        if (e.count != L.pc[p] || e.count < 2) continue;
        int32_t a = L.pl[p], b = L.pr[p], z = AES_TOK_FIRST_MERGE + nm;
        if (nm == capm) {
            capm = capm ? (capm > target / 2 ? target : 2 * capm) : (target < 1024 ? target : 1024);
            merges = aes_realloc(merges, 2 * (size_t)capm * sizeof *merges, "tokenizer merges");
        }
        merges[2 * nm] = a;
        merges[2 * nm + 1] = b;
        nm++;

        L.stamp++;
        L.ndirty = 0;
        for (int32_t j = 0; j < L.pwn[p]; j++) {
            int32_t w = L.pw[p][j];
            if (L.wstamp[w] == L.stamp) continue;
            L.wstamp[w] = L.stamp;
            merge_word(&L, w, a, b, z);
        }
        /* (a, b) is gone for good: merges only create pairs that hold z. */
        free(L.pw[p]);
        L.pw[p] = NULL;
        L.pwn[p] = L.pwcap[p] = 0;
        L.pc[p] = 0;
        for (size_t j = 0; j < L.ndirty; j++) {
            int32_t q = L.dirty[j];
            if (L.pc[q] >= 2) heap_push(&L, q);
        }
    }
    learner_free(&L);

    if (build(tok, merges, nm) != 0) aes_internal_error("tokenizer: learned an invalid merge table");
    return 0;
}

/* ---- encoding ------------------------------------------------------------ */

static inline void minheap_push(uint64_t *h, int *n, uint64_t v)
{
    int i = (*n)++;
    while (i > 0) {
        int up = (i - 1) / 2;
        if (h[up] <= v) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = v;
}

static inline uint64_t minheap_pop(uint64_t *h, int *n)
{
    uint64_t top = h[0], v = h[--*n];
    int m = *n, i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* BPE of one word s[0..m), m >= 2. Leaves the tokens in sym along the
 * nxt chain that starts at 0. sym, nxt, prv hold m entries, heap 3m. The
 * heap holds (rank << 32 | position): all occurrences of the lowest rank go
 * left to right before any higher rank, and a merge only creates pairs of
 * higher rank, so this is GPT-2's "merge the best pair everywhere, repeat". */
static void bpe_word(const aes_tokenizer *tok, const pair_map *ranks, const uint8_t *s, int m,
                     int32_t *sym, int32_t *nxt, int32_t *prv, uint64_t *heap)
{
    int nh = 0;
    for (int i = 0; i < m; i++) {
        sym[i] = AES_TOK_BYTE0 + s[i];
        nxt[i] = i + 1 < m ? i + 1 : -1;
        prv[i] = i - 1;
    }
    for (int i = 0; i + 1 < m; i++) {
        int32_t r = pm_get(ranks, pair_key(sym[i], sym[i + 1]));
        if (r >= 0) minheap_push(heap, &nh, (uint64_t)(uint32_t)r << 32 | (uint32_t)i);
    }
    while (nh > 0) {
        uint64_t e = minheap_pop(heap, &nh);
        int32_t r = (int32_t)(e >> 32), i = (int32_t)(uint32_t)e;
        int32_t j = nxt[i];
        /* Stale: i was merged away, or either side has changed since. */
        if (sym[i] < 0 || j < 0 || sym[i] != tok->merges[2 * r] || sym[j] != tok->merges[2 * r + 1])
            continue;
        sym[i] = AES_TOK_FIRST_MERGE + r;
        sym[j] = -1;
        nxt[i] = nxt[j];
        if (nxt[j] >= 0) prv[nxt[j]] = i;
        int32_t h = prv[i];
        if (h >= 0) {
            int32_t q = pm_get(ranks, pair_key(sym[h], sym[i]));
            if (q >= 0) minheap_push(heap, &nh, (uint64_t)(uint32_t)q << 32 | (uint32_t)h);
        }
        if (nxt[i] >= 0) {
            int32_t q = pm_get(ranks, pair_key(sym[i], sym[nxt[i]]));
            if (q >= 0) minheap_push(heap, &nh, (uint64_t)(uint32_t)q << 32 | (uint32_t)i);
        }
    }
}

/* Texts up to this many bytes are encoded without touching the allocator. */
#define ENC_STACK 256

int aes_tokenizer_encode(const aes_tokenizer *tok, const char *text, int32_t *out, int L,
                         int *truncated)
{
    if (L < 2) aes_internal_error("tokenizer: encode length %d below 2", L);
    const tok_private *priv = tok->pair_table;
    if (!priv) aes_internal_error("tokenizer: encode with an unbuilt tokenizer");
    size_t tn = text ? strlen(text) : 0;
    if (tn >= INT32_MAX / 4) aes_internal_error("tokenizer: text of %zu bytes", tn);

    char sbuf[ENC_STACK + 1];
    int32_t ssym[ENC_STACK], snxt[ENC_STACK], sprv[ENC_STACK];
    uint64_t sheap[3 * ENC_STACK];
    char *buf = sbuf;
    int32_t *sym = ssym, *nxt = snxt, *prv = sprv;
    uint64_t *heap = sheap;
    void *block = NULL;
    if (tn > ENC_STACK) {
        size_t ints = 3 * tn * sizeof(int32_t), heaps = 3 * tn * sizeof(uint64_t);
        block = aes_malloc(heaps + ints + tn + 1, "tokenizer encode scratch");
        heap = block;
        sym = (int32_t *)((char *)block + heaps);
        nxt = sym + tn;
        prv = nxt + tn;
        buf = (char *)(prv + tn);
    }
    size_t n = aes_text_normalize(text, buf, tn + 1);

    const uint8_t *s = (const uint8_t *)buf;
    int cap = L - 2, k = 0, cut = 0;
    out[0] = AES_TOK_SOT;
    for (size_t i = 0; i < n && !cut;) {
        size_t j = word_end(s, i, n);
        int m = (int)(j - i);
        if (m == 1) {
            if (k == cap) cut = 1;
            else out[1 + k++] = AES_TOK_BYTE0 + s[i];
        } else {
            bpe_word(tok, &priv->ranks, s + i, m, sym, nxt, prv, heap);
            for (int32_t q = 0; q >= 0; q = nxt[q]) {
                if (k == cap) {
                    cut = 1;
                    break;
                }
                out[1 + k++] = sym[q];
            }
        }
        i = j;
    }
    out[1 + k] = AES_TOK_EOT;
    for (int i = k + 2; i < L; i++) out[i] = AES_TOK_PAD;
    free(block);
    if (truncated) *truncated = cut;
    return k + 2;
}

/* ---- decoding ------------------------------------------------------------ */

size_t aes_tokenizer_decode(const aes_tokenizer *tok, const int32_t *ids, int n, char *out,
                            size_t cap)
{
    if (cap == 0) return 0;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id == AES_TOK_EOT) break;
        /* Specials and ids outside the vocabulary carry no bytes. */
        if (id < AES_TOK_BYTE0 || id >= tok->vocab_size) continue;
        size_t m = (size_t)tok->tok_len[id];
        if (m > cap - 1 - len) m = cap - 1 - len;
        memcpy(out + len, tok->tok_bytes[id], m);
        len += m;
        if (len == cap - 1) break;
    }
    out[len] = 0;
    return len;
}

uint64_t aes_tokenizer_hash(const aes_tokenizer *tok)
{
    uint64_t h = aes_fnv1a(tok->merges, sizeof(int32_t) * 2 * (size_t)tok->n_merges);
    h = aes_hash64(h ^ (uint64_t)tok->n_merges);
    return h ? h : 1;
}
