#include "CSentencePiece.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace sentencepiece {
namespace logging {
void SetMinLogLevel(int v);
}
}  // namespace sentencepiece

struct spm_processor {
  sentencepiece::SentencePieceProcessor impl;
};

static char *copy_string(const std::string &s) {
  char *out = static_cast<char *>(std::malloc(s.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  return out;
}

static void set_error(char **error, const std::string &message) {
  if (error != nullptr) *error = copy_string(message);
}

extern "C" {

spm_processor *spm_load_file(const char *path, char **error) {
  try {
    auto *p = new spm_processor();
    auto status = p->impl.Load(path);
    if (!status.ok()) {
      set_error(error, status.ToString());
      delete p;
      return nullptr;
    }
    return p;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return nullptr;
  }
}

spm_processor *spm_load_bytes(const void *bytes, size_t length, char **error) {
  try {
    auto *p = new spm_processor();
    std::string serialized(static_cast<const char *>(bytes), length);
    auto status = p->impl.LoadFromSerializedProto(serialized);
    if (!status.ok()) {
      set_error(error, status.ToString());
      delete p;
      return nullptr;
    }
    return p;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return nullptr;
  }
}

void spm_free(spm_processor *processor) { delete processor; }

int32_t spm_vocab_size(const spm_processor *p) { return p->impl.GetPieceSize(); }
int32_t spm_pad_id(const spm_processor *p) { return p->impl.pad_id(); }
int32_t spm_unk_id(const spm_processor *p) { return p->impl.unk_id(); }
int32_t spm_bos_id(const spm_processor *p) { return p->impl.bos_id(); }
int32_t spm_eos_id(const spm_processor *p) { return p->impl.eos_id(); }

char *spm_id_to_piece(const spm_processor *p, int32_t id) {
  if (id < 0 || id >= p->impl.GetPieceSize()) return nullptr;
  return copy_string(p->impl.IdToPiece(id));
}

int spm_encode(const spm_processor *p, const char *text, size_t length, int32_t **ids,
               size_t *count, char **error) {
  try {
    std::vector<int> out;
    auto status = p->impl.Encode(std::string_view(text, length), &out);
    if (!status.ok()) {
      set_error(error, status.ToString());
      return 1;
    }
    *count = out.size();
    *ids = static_cast<int32_t *>(std::malloc(sizeof(int32_t) * (out.size() + 1)));
    if (*ids == nullptr) {
      set_error(error, "out of memory");
      return 1;
    }
    for (size_t i = 0; i < out.size(); ++i) (*ids)[i] = out[i];
    return 0;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return 1;
  }
}

int spm_normalize(const spm_processor *p, const char *text, size_t length, char **normalized,
                  size_t *normalized_length, char **error) {
  try {
    std::vector<std::string> pieces;
    auto status = p->impl.Encode(std::string_view(text, length), &pieces);
    if (!status.ok()) {
      set_error(error, status.ToString());
      return 1;
    }
    std::string out;
    for (const auto &piece : pieces) out += piece;
    *normalized = static_cast<char *>(std::malloc(out.size() + 1));
    if (*normalized == nullptr) {
      set_error(error, "out of memory");
      return 1;
    }
    std::memcpy(*normalized, out.data(), out.size());
    (*normalized)[out.size()] = 0;
    *normalized_length = out.size();
    return 0;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return 1;
  }
}

float spm_score(const spm_processor *p, int32_t id) {
  if (id < 0 || id >= p->impl.GetPieceSize()) return 0;
  return p->impl.GetScore(id);
}

int spm_is_normal(const spm_processor *p, int32_t id) {
  if (id < 0 || id >= p->impl.GetPieceSize()) return 0;
  return !(p->impl.IsControl(id) || p->impl.IsUnknown(id) || p->impl.IsUnused(id));
}

int spm_decode(const spm_processor *p, const int32_t *ids, size_t count, char **text,
               char **error) {
  try {
    std::vector<int> in(ids, ids + count);
    std::string out;
    auto status = p->impl.Decode(in, &out);
    if (!status.ok()) {
      set_error(error, status.ToString());
      return 1;
    }
    *text = copy_string(out);
    return 0;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return 1;
  }
}

namespace {
// Feeds sentences held in memory, so no temporary file (whose path SentencePiece
// would record in the model) is needed and the model bytes are reproducible.
class ArrayIterator : public sentencepiece::SentenceIterator {
 public:
  ArrayIterator(const char *const *sentences, const size_t *lengths, size_t count)
      : sentences_(sentences), lengths_(lengths), count_(count) {
    Load();
  }
  bool done() const override { return index_ >= count_; }
  void Next() override {
    ++index_;
    Load();
  }
  const std::string &value() const override { return value_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void Load() {
    if (index_ < count_) value_.assign(sentences_[index_], lengths_[index_]);
  }
  const char *const *sentences_;
  const size_t *lengths_;
  size_t count_;
  size_t index_ = 0;
  std::string value_;
};
}  // namespace

int spm_train(const char *args, const char *const *sentences, const size_t *lengths, size_t count,
              void **bytes, size_t *length, char **error) {
  try {
    std::string serialized;
    ArrayIterator it(sentences, lengths, count);
    auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &serialized);
    if (!status.ok()) {
      set_error(error, status.ToString());
      return 1;
    }
    *length = serialized.size();
    *bytes = std::malloc(serialized.size() == 0 ? 1 : serialized.size());
    if (*bytes == nullptr) {
      set_error(error, "out of memory");
      return 1;
    }
    std::memcpy(*bytes, serialized.data(), serialized.size());
    return 0;
  } catch (const std::exception &e) {
    set_error(error, e.what());
    return 1;
  }
}

void spm_set_min_log_level(int level) { sentencepiece::logging::SetMinLogLevel(level); }

void spm_set_random_seed(uint32_t seed) { sentencepiece::SetRandomGeneratorSeed(seed); }

void spm_free_string(char *string) { std::free(string); }
void spm_free_ids(int32_t *ids) { std::free(ids); }
void spm_free_bytes(void *bytes) { std::free(bytes); }

}  // extern "C"
