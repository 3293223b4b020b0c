#ifndef TANGENT_CSENTENCEPIECE_H
#define TANGENT_CSENTENCEPIECE_H

// A thin C boundary over the SentencePiece C++ library. Every fallible call returns
// 0 on success; on failure it returns non-zero and stores a malloc'ed message in
// *error (free it with spm_free_string), so the library's own words reach Swift.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_processor spm_processor;

/// Loads a serialized model from a file. Returns NULL and sets *error on failure.
spm_processor *spm_load_file(const char *path, char **error);
/// Loads a model from serialized ModelProto bytes.
spm_processor *spm_load_bytes(const void *bytes, size_t length, char **error);
void spm_free(spm_processor *processor);

int32_t spm_vocab_size(const spm_processor *processor);
int32_t spm_pad_id(const spm_processor *processor);
int32_t spm_unk_id(const spm_processor *processor);
int32_t spm_bos_id(const spm_processor *processor);
int32_t spm_eos_id(const spm_processor *processor);
/// The piece string of an id (malloc'ed, free with spm_free_string); NULL if out of range.
char *spm_id_to_piece(const spm_processor *processor, int32_t id);

/// Encodes UTF-8 text to ids. *ids is malloc'ed (free with spm_free_ids).
int spm_encode(const spm_processor *processor, const char *text, size_t length,
               int32_t **ids, size_t *count, char **error);
/// The text as the model normalizes it (whitespace as U+2581): the concatenation of
/// the pieces Encode finds, unknown characters included (malloc'ed, free with spm_free_string).
/// *normalized_length counts its bytes (it may hold NUL characters).
int spm_normalize(const spm_processor *processor, const char *text, size_t length, char **normalized,
                  size_t *normalized_length, char **error);
/// The score of an id's piece (its log probability in a unigram model); 0 if out of range.
float spm_score(const spm_processor *processor, int32_t id);
/// Whether an id is a normal piece (not control, unknown, user-defined or unused).
int spm_is_normal(const spm_processor *processor, int32_t id);
/// Decodes ids to UTF-8 text (malloc'ed, free with spm_free_string).
int spm_decode(const spm_processor *processor, const int32_t *ids, size_t count,
               char **text, char **error);

/// Trains a model on `count` UTF-8 sentences (pointers and byte lengths) with a
/// SentencePiece argument string (as spm_train takes, without --input) and returns the
/// serialized ModelProto in *bytes (malloc'ed, free with spm_free_bytes).
int spm_train(const char *args, const char *const *sentences, const size_t *lengths, size_t count,
              void **bytes, size_t *length, char **error);

/// Sets the library's minimum log level (0 info, 1 warning, 2 error).
void spm_set_min_log_level(int level);

/// Seeds the library's random generator (used by training).
void spm_set_random_seed(uint32_t seed);

void spm_free_string(char *string);
void spm_free_ids(int32_t *ids);
void spm_free_bytes(void *bytes);

#ifdef __cplusplus
}
#endif

#endif
