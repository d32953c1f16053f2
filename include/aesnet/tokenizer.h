/*
 * Byte-level BPE tokenizer for the attribute descriptions.
 *
 * Ids: 0 = <pad>, 1 = <|startoftext|>, 2 = <|endoftext|>, 3..258 = the 256
 * bytes, 259 + i = merge i. Text is normalised before learning and encoding:
 * ASCII lower case, runs of white space collapsed to one space, trimmed.
 * Pre-tokenisation splits the normalised text into words (a letter/digit
 * run with its leading space, or one other non-space byte with its leading
 * space); merges never cross a word boundary.
 */
#ifndef AESNET_TOKENIZER_H
#define AESNET_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define AES_TOK_PAD 0
#define AES_TOK_SOT 1
#define AES_TOK_EOT 2
#define AES_TOK_BYTE0 3
#define AES_TOK_FIRST_MERGE 259

typedef struct aes_tokenizer {
    int vocab_size;  /* AES_TOK_FIRST_MERGE + n_merges */
    int n_merges;
    int32_t *merges; /* [n_merges, 2]: merge i joins (left, right) into id 259 + i */
    /* derived for decoding and encoding */
    uint8_t **tok_bytes; /* [vocab_size] byte string of each id (NULL for specials) */
    int *tok_len;        /* [vocab_size] */
    void *pair_table;    /* private: (left, right) -> merge rank */
} aes_tokenizer;

/* Normalise text into out (cap bytes incl. NUL); returns its length. */
size_t aes_text_normalize(const char *text, char *out, size_t cap);

/* Learn merges on texts until vocab_size is reached or no pair occurs at
 * least twice. Deterministic: ties go to the pair with the smaller
 * (left, right). vocab_size must be >= AES_TOK_FIRST_MERGE. Returns 0. */
int aes_tokenizer_learn(aes_tokenizer *tok, const char *const *texts, size_t n, int vocab_size);

/* Build from stored merges; returns -1 if a merge refers to an id that does
 * not exist yet (a corrupt table). */
int aes_tokenizer_from_merges(aes_tokenizer *tok, const int32_t *merges, int n_merges);

/* Encode into exactly L ids: <sot> tokens... <eot> then <pad>. When the text
 * does not fit, it is cut and <eot> kept in the last slot; *truncated is set
 * to 1 then (else 0). Returns the number of non-pad ids written. L >= 2. */
int aes_tokenizer_encode(const aes_tokenizer *tok, const char *text, int32_t *out, int L,
                         int *truncated);

/* Decode ids (specials skipped, stops at <eot>) into out; returns length. */
size_t aes_tokenizer_decode(const aes_tokenizer *tok, const int32_t *ids, int n, char *out,
                            size_t cap);

void aes_tokenizer_free(aes_tokenizer *tok);

/* A 64-bit identity of the tokenizer (its merge table): data sets with the
 * same hash encode text identically. Never 0. */
uint64_t aes_tokenizer_hash(const aes_tokenizer *tok);

#endif
