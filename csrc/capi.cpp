// capi.cpp: include/nextoken/nextoken.h over the model layer. Each entry point catches everything: a
// nextoken::Error (bad input) becomes a status and this thread's message; nothing crosses the boundary.
#include "../include/nextoken/nextoken.h"

#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>

#include "loaders/gguf_models.h"
#include "loaders/hf_models.h"
#include "model/beam_search.h"
#include "tokenizer/hf_vocabulary.h"
#include "tokenizer/tokenizer.h"
#include "model/session.h"
#include "parallel.h"

using namespace nextoken;

namespace {

thread_local std::string last_error;

// Errors a file gives while loading are reported as NT_ERROR_MODEL_FILE.
struct FileError : Error {
  using Error::Error;
};
// An output that did not fit the caller's buffer (the size it needs is already reported).
struct BufferTooSmall : Error {
  using Error::Error;
};

template <class F>
nt_status guarded(const F& fn) {
  try {
    last_error.clear();
    fn();
    return NT_OK;
  } catch (const FileError& e) {
    last_error = e.what();
    return NT_ERROR_MODEL_FILE;
  } catch (const BufferTooSmall& e) {
    last_error = e.what();
    return NT_ERROR_BUFFER_TOO_SMALL;
  } catch (const Error& e) {
    last_error = e.what();
    return NT_ERROR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    last_error = "out of memory";
    return NT_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    last_error = std::string("internal error: ") + e.what();
    return NT_ERROR_INTERNAL;
  } catch (...) {
    last_error = "internal error";
    return NT_ERROR_INTERNAL;
  }
}

void check_pointer(const void* p, const char* what) { NT_CHECK(p != nullptr, std::string(what) + " is NULL"); }

std::vector<int32_t> checked_ids(const int32_t* ids, size_t n, const char* what) {
  NT_CHECK(n > 0, std::string(what) + " is empty");
  check_pointer(ids, what);
  NT_CHECK(n < (size_t(1) << 31), std::string(what) + " is too long");
  return std::vector<int32_t>(ids, ids + n);
}

SamplingParams sampling_params(const nt_sampling* s, int vocab_size) {
  nt_sampling d;
  nt_sampling_init(&d);
  if (!s) s = &d;
  SamplingParams p;
  p.temperature = s->temperature;
  p.top_k = s->top_k;
  p.top_p = s->top_p;
  p.seed = s->seed;
  p.more.min_p = s->min_p;
  p.more.typical_p = s->typical_p;
  p.more.repetition_penalty = s->repetition_penalty;
  p.more.presence_penalty = s->presence_penalty;
  p.more.frequency_penalty = s->frequency_penalty;
  p.more.no_repeat_ngram_size = s->no_repeat_ngram_size;
  check_sampling_params(p, vocab_size);
  return p;
}

}  // namespace

struct nt_model;
namespace {
void generation_settings(nt_model& m);
}

struct nt_model {
  ModelSpec spec;
  std::shared_ptr<const SafetensorsFiles> folder_weights;  // a Hugging Face folder's tensors (the spec views them)
  std::shared_ptr<const Transformer> transformer;
  // Encoder-decoder models: the encoder, and what generation takes from the folder's configs.
  std::shared_ptr<const Transformer> encoder;
  int32_t decoder_start = -1, forced_bos = -1;
  std::vector<std::vector<int32_t>> bad_words;
  bool renormalize = false;
  std::unique_ptr<Session> session;
  std::unique_ptr<Tokenizer> tokenizer;  // null where the folder's tokenizer.json is not read (tokenizer_error)
  std::string tokenizer_error;
  std::vector<int32_t> eos_ids;

  bool encodes_images() const { return spec.vision.is_object(); }

  // The encoder's hidden states (T, dim) of a source of T ids (text encoder-decoder models).
  std::vector<float> encode_source(const std::vector<int32_t>& source) const {
    NT_CHECK(encoder, "this model is decoder-only: it has no encoder");
    NT_CHECK(!encodes_images(), "this model encodes images, which the C API does not read: give an image's encoder "
                                "states (the Python API's encode(image=...)) to nt_generate_encoded");
    const int T = int(source.size());
    encoder->check_tokens(source.data(), T, 0, encoder->max_positions());
    std::vector<float> states(size_t(T) * size_t(encoder->config().dim));
    encoder->encode(source.data(), nullptr, T, states.data(), session->n_threads());
    return states;
  }

  // An encoder-decoder's prompt is its source: its states, and the decoder's first ids as the Python API's
  // generate(source) starts; a decoder-only model's prompt is left as it is.
  std::vector<float> encode(std::vector<int32_t>& prompt, int& n_states) const {
    n_states = 0;
    if (!encoder) return {};
    std::vector<float> states = encode_source(prompt);
    n_states = int(prompt.size());
    prompt = {decoder_start};
    return states;
  }

  const Tokenizer& text() const {
    NT_CHECK(tokenizer, "this model has no tokenizer the C API reads (tokenize in the caller): " + tokenizer_error);
    return *tokenizer;
  }
};

namespace {

// An id that a folder's config gives, checked against the vocabulary; null is -1 where `optional`.
int32_t config_id(const JSON& v, const char* key, int vocab_size, bool optional) {
  if (v.is_null() && optional) return -1;
  if (!v.is_integer() || v.integer < 0 || v.integer >= vocab_size)
    throw Error(std::string(key) + " must be an integer in [0, " + std::to_string(vocab_size) + "), got " + v.describe());
  return int32_t(v.integer);
}

// decoder_start_token_id, forced_bos_token_id, bad_words_ids and renormalize_logits of an encoder-decoder
// folder, as the Python API applies them by default.
void generation_settings(nt_model& m) {
  const JSON& g = m.spec.generation;
  const int V = m.spec.config.vocab_size;
  const JSON none;
  const auto value = [&](const char* key) { const JSON* v = g.find(key); return v ? *v : none; };
  m.decoder_start = config_id(value("decoder_start_token_id"), "decoder_start_token_id", V, false);
  m.forced_bos = config_id(value("forced_bos_token_id"), "forced_bos_token_id", V, true);
  const JSON bad = value("bad_words_ids");
  NT_CHECK(bad.is_null() || bad.is_array(), "bad_words_ids must be a list of token-id lists");
  for (const JSON& word : bad.items) {
    NT_CHECK(word.is_array() && !word.items.empty(), "bad_words_ids must be a list of non-empty token-id lists");
    std::vector<int32_t> ids;
    for (const JSON& id : word.items) ids.push_back(config_id(id, "a bad_words_ids id", V, false));
    m.bad_words.push_back(ids);
  }
  const JSON renormalize = value("renormalize_logits");
  m.renormalize = renormalize.kind == JSON::Kind::Bool && renormalize.boolean;  // the loader made it a bool
}

SequenceOptions sequence_options(const nt_model& m, int32_t max_new_tokens, const nt_sampling* sampling) {
  SequenceOptions o;
  o.max_new_tokens = max_new_tokens;
  o.sampling = sampling_params(sampling, m.spec.config.vocab_size);
  o.sampling.more.bad_words_ids = m.bad_words;  // Marian bans its pad id
  o.eos_ids = m.eos_ids;
  o.forced_bos = m.forced_bos;
  return o;
}

}  // namespace

extern "C" {

const char* nt_last_error(void) { return last_error.c_str(); }

void nt_load_options_init(nt_load_options* o) {
  if (o) *o = nt_load_options{2048, 0, "float32", "f32", nullptr};
}

nt_status nt_model_load(const char* path, const nt_load_options* options, nt_model** model) {
  return guarded([&] {
    check_pointer(path, "path");
    check_pointer(model, "model");
    nt_load_options o;
    nt_load_options_init(&o);
    if (options) o = *options;
    const std::string compute = o.compute_type ? o.compute_type : "float32";
    const std::string kv = o.kv_cache ? o.kv_cache : "f32";
    NT_CHECK(compute == "float32" || compute == "int8", "compute_type must be 'float32' or 'int8', got '" + compute + "'");
    NT_CHECK(kv == "f32" || kv == "f16" || kv == "bf16" || kv == "q8_0",
             "kv_cache must be 'f32', 'f16', 'bf16' or 'q8_0', got '" + kv + "'");
    NT_CHECK(o.n_ctx > 0, "n_ctx must be positive, got " + std::to_string(o.n_ctx));
    int n_threads = o.n_threads;
    if (n_threads == 0) {  // every core this process may run on
      cpu_set_t set;
      n_threads = sched_getaffinity(0, sizeof(set), &set) == 0 ? std::min(std::max(1, CPU_COUNT(&set)), MAX_THREADS) : 1;
    }
    check_threads(n_threads);
    auto m = std::make_unique<nt_model>();
    struct stat st;
    const bool folder = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    NT_CHECK(!folder || !o.packed_cache, "packed_cache keeps a GGUF file's repacked weights; a folder has none");
    try {
      if (folder) {
        const HFFolder f = read_hf_folder(path);
        m->folder_weights = f.weights;
        m->spec = spec_from_hf(f.config, f.generation_config, f.weights->tensors(), f.name, o.n_ctx);
        m->eos_ids = hf_eos_ids(f, m->spec.config.vocab_size);
      } else {
        auto file = std::make_shared<const GGUFFile>(path);
        m->spec = spec_from_gguf(file);
        m->tokenizer = std::make_unique<Tokenizer>(*file, m->spec.config.vocab_size);
        m->eos_ids = m->tokenizer->eos_ids();
      }
    } catch (const FileError&) {
      throw;
    } catch (const Error& e) {
      throw FileError(std::string(path) + ": " + e.what());
    }
    ModelConfig c = m->spec.config;
    c.kv_type = kv == "f16" ? DType::F16 : kv == "bf16" ? DType::BF16 : kv == "q8_0" ? DType::Q8_0 : DType::F32;
    try {
      const PackedCache cache{o.packed_cache ? o.packed_cache : "", folder ? "" : m->spec.file->identity()};
      // A folder's spec holds converted copies in RAM, whose pages must not be dropped after repacking.
      m->transformer = std::make_shared<Transformer>(c, m->spec.tensors, o.n_ctx,
                                                     compute == "int8" ? ComputeType::Int8 : ComputeType::Float32,
                                                     !folder, n_threads, cache);
    } catch (const Error& e) {
      throw FileError(std::string(path) + ": " + e.what());
    }
    if (folder) {  // now that vocab_size is checked against the embeddings, which the tokenizer is sized by
      try {  // a tokenizer.json the core does not read leaves the model to ids (nt_tokenize says why)
        m->tokenizer = std::make_unique<Tokenizer>(hf_vocabulary(path, m->spec.config.vocab_size, m->eos_ids));
      } catch (const Error& e) {
        m->tokenizer_error = e.what();
      }
    }
    if (m->spec.encoder) {
      try {
        generation_settings(*m);
        ModelConfig e = m->spec.encoder->config;
        e.kv_type = c.kv_type;
        m->encoder = std::make_shared<Transformer>(e, m->spec.encoder->tensors, o.n_ctx,
                                                   compute == "int8" ? ComputeType::Int8 : ComputeType::Float32,
                                                   false, n_threads, PackedCache{});
      } catch (const Error& e) {
        throw FileError(std::string(path) + ": " + e.what());
      }
    }
    m->session = std::make_unique<Session>(m->transformer, o.n_ctx, n_threads);
    *model = m.release();
  });
}

void nt_model_free(nt_model* model) { delete model; }

int32_t nt_model_vocab_size(const nt_model* model) { return model ? model->spec.config.vocab_size : 0; }

int32_t nt_model_n_ctx(const nt_model* model) { return model ? model->session->n_ctx() : 0; }

size_t nt_model_eos_ids(const nt_model* model, int32_t* ids, size_t capacity) {
  if (!model) return 0;
  const std::vector<int32_t>& eos = model->eos_ids;
  for (size_t i = 0; ids && i < capacity && i < eos.size(); ++i) ids[i] = eos[i];
  return eos.size();
}

nt_status nt_detokenize(const nt_model* model, const int32_t* ids, size_t n_ids, char* text, size_t capacity,
                        size_t* length) {
  return guarded([&] {
    check_pointer(model, "model");
    check_pointer(length, "length");
    NT_CHECK(n_ids == 0 || ids, "ids is NULL");
    std::vector<int32_t> list(ids, ids + n_ids);
    const std::string out = model->text().decode(list, true);
    *length = out.size();
    if (!text || capacity < out.size() + 1)
      throw BufferTooSmall("the text needs " + std::to_string(out.size() + 1) + " bytes");
    std::memcpy(text, out.c_str(), out.size() + 1);
  });
}

nt_status nt_tokenize(const nt_model* model, const char* text, size_t length, int parse_special, int add_bos,
                      int32_t* ids, size_t capacity, size_t* n_ids) {
  return guarded([&] {
    check_pointer(model, "model");
    check_pointer(n_ids, "n_ids");
    NT_CHECK(length == 0 || text, "text is NULL");
    const std::vector<int32_t> out =
        model->text().encode(std::string(text ? text : "", length), parse_special != 0, add_bos != 0);
    *n_ids = out.size();
    if (out.size() > capacity || (!ids && !out.empty()))
      throw BufferTooSmall("the ids need room for " + std::to_string(out.size()));
    std::copy(out.begin(), out.end(), ids);
  });
}

nt_status nt_forward(nt_model* model, const int32_t* ids, size_t n_ids, float* logits, size_t capacity) {
  return guarded([&] {
    check_pointer(model, "model");
    const std::vector<int32_t> tokens = checked_ids(ids, n_ids, "ids");
    check_pointer(logits, "logits");
    NT_CHECK(!model->encoder, "nt_forward runs decoder-only models; this one is an encoder-decoder (nt_generate takes "
                              "the source as its prompt)");
    const int V = model->spec.config.vocab_size;
    NT_CHECK(capacity >= size_t(V), "logits has room for " + std::to_string(capacity) + " floats, needs " + std::to_string(V));
    model->session->forward(tokens.data(), int(tokens.size()), 0, logits, false);
  });
}

void nt_sampling_init(nt_sampling* s) {
  if (s) *s = nt_sampling{0.0f, 0, 1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0, 0};
}

namespace {

// nt_generate's loop: the sequence of `prompt` (with an encoder-decoder's source states) run to its end.
void generate_sequence(nt_model* model, const std::vector<int32_t>& prompt, const float* states, int n_states,
                       int32_t max_new_tokens, const nt_sampling* sampling, int32_t* out, size_t capacity,
                       size_t* n_out) {
  check_pointer(n_out, "n_out");
  NT_CHECK(max_new_tokens > 0, "max_new_tokens must be positive, got " + std::to_string(max_new_tokens));
  check_pointer(out, "out");
  NT_CHECK(capacity >= size_t(max_new_tokens), "out has room for " + std::to_string(capacity) + " ids, needs " +
                                                   std::to_string(max_new_tokens));
  const SequenceOptions o = sequence_options(*model, max_new_tokens, sampling);
  Session& s = *model->session;
  const uint64_t id = s.add(prompt, o, true, states, n_states);
  size_t n = 0;
  try {
    for (;;) {
      const StepOutput step = s.next(id);
      if (step.token < 0) break;
      out[n++] = step.token;
      if (step.finished) break;
    }
  } catch (...) {
    s.free(id);
    throw;
  }
  s.free(id);
  *n_out = n;
}

}  // namespace

nt_status nt_generate(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                      const nt_sampling* sampling, int32_t* out, size_t capacity, size_t* n_out) {
  return guarded([&] {
    check_pointer(model, "model");
    std::vector<int32_t> ids = checked_ids(prompt, n_prompt, "prompt");
    int n_states = 0;
    const std::vector<float> states = model->encode(ids, n_states);
    generate_sequence(model, ids, states.empty() ? nullptr : states.data(), n_states, max_new_tokens, sampling, out,
                      capacity, n_out);
  });
}

int32_t nt_model_dim(const nt_model* model) { return model ? model->spec.config.dim : 0; }

nt_status nt_encode(nt_model* model, const int32_t* source, size_t n_source, float* states, size_t capacity) {
  return guarded([&] {
    check_pointer(model, "model");
    const std::vector<float> out = model->encode_source(checked_ids(source, n_source, "source"));
    check_pointer(states, "states");
    NT_CHECK(capacity >= out.size(), "states has room for " + std::to_string(capacity) + " floats, needs " +
                                         std::to_string(out.size()));
    std::copy(out.begin(), out.end(), states);
  });
}

nt_status nt_generate_encoded(nt_model* model, const float* states, size_t n_states, int32_t max_new_tokens,
                              const nt_sampling* sampling, int32_t* out, size_t capacity, size_t* n_out) {
  return guarded([&] {
    check_pointer(model, "model");
    NT_CHECK(model->encoder, "this model is decoder-only: it takes no encoder states");
    NT_CHECK(n_states > 0 && n_states < (size_t(1) << 31), "n_states must be positive");
    check_pointer(states, "states");
    const size_t n = n_states * size_t(model->spec.config.dim);
    for (size_t i = 0; i < n; ++i)
      NT_CHECK(std::isfinite(states[i]), "states holds a NaN or infinity at " + std::to_string(i));
    generate_sequence(model, {model->decoder_start}, states, int(n_states), max_new_tokens, sampling, out, capacity,
                      n_out);
  });
}

void nt_beam_options_init(nt_beam_options* o) {
  if (o) *o = nt_beam_options{4, 1, 1.0, 0, 0, 1.0f, 0};
}

nt_status nt_beam_search(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                         const nt_beam_options* options, int32_t* out, size_t capacity, int32_t* lengths,
                         float* scores, size_t n_capacity) {
  return guarded([&] {
    check_pointer(model, "model");
    nt_beam_options given;
    nt_beam_options_init(&given);
    if (options) given = *options;
    NT_CHECK(given.early_stopping >= 0 && given.early_stopping <= 2,
             "early_stopping must be 0 (heuristic), 1 (stop) or 2 (never), got " + std::to_string(given.early_stopping));
    NT_CHECK(std::isfinite(given.length_penalty), "length_penalty must be finite");
    BeamOptions o;
    o.num_beams = given.num_beams;
    o.num_return_sequences = given.num_return_sequences;
    o.max_new_tokens = max_new_tokens;
    o.min_new_tokens = given.min_new_tokens;
    o.length_penalty = given.length_penalty;
    o.early_stopping = given.early_stopping == 1 ? EarlyStopping::Stop
                       : given.early_stopping == 2 ? EarlyStopping::Never : EarlyStopping::Heuristic;
    o.eos_ids = model->eos_ids;
    SamplingParams processors;  // greedy: only the logits processors apply
    processors.more.repetition_penalty = given.repetition_penalty;
    processors.more.no_repeat_ngram_size = given.no_repeat_ngram_size;
    check_sampling_params(processors, model->spec.config.vocab_size);
    o.processors = processors.more;
    o.processors.bad_words_ids = model->bad_words;
    o.forced_bos = model->forced_bos;
    o.renormalize = model->renormalize;
    std::vector<int32_t> ids = checked_ids(prompt, n_prompt, "prompt");
    int n_states = 0;
    const std::vector<float> states = model->encode(ids, n_states);
    NT_CHECK(max_new_tokens > 0, "max_new_tokens must be positive, got " + std::to_string(max_new_tokens));
    NT_CHECK(o.num_return_sequences > 0 && o.num_return_sequences <= o.num_beams,
             "num_return_sequences must be in [1, num_beams = " + std::to_string(o.num_beams) + "], got " +
                 std::to_string(o.num_return_sequences));
    const size_t n = size_t(o.num_return_sequences);
    check_pointer(out, "out");
    check_pointer(lengths, "lengths");
    check_pointer(scores, "scores");
    NT_CHECK(capacity >= n * size_t(max_new_tokens) && n_capacity >= n,
             "out needs room for num_return_sequences * max_new_tokens = " + std::to_string(n * size_t(max_new_tokens)) +
                 " ids and lengths / scores for " + std::to_string(n));
    const std::vector<Hypothesis> best = beam_search(*model->transformer, model->session->n_ctx(), ids, o,
                                                     model->session->n_threads(),
                                                     states.empty() ? nullptr : states.data(), n_states);
    for (size_t i = 0; i < best.size(); ++i) {
      std::copy(best[i].tokens.begin(), best[i].tokens.end(), out + i * size_t(max_new_tokens));
      lengths[i] = int32_t(best[i].tokens.size());
      scores[i] = best[i].score;
    }
  });
}

nt_status nt_sequence_add(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                          const nt_sampling* sampling, uint64_t* sequence) {
  return guarded([&] {
    check_pointer(model, "model");
    check_pointer(sequence, "sequence");
    NT_CHECK(max_new_tokens > 0, "max_new_tokens must be positive, got " + std::to_string(max_new_tokens));
    const SequenceOptions o = sequence_options(*model, max_new_tokens, sampling);
    std::vector<int32_t> ids = checked_ids(prompt, n_prompt, "prompt");
    int n_states = 0;
    const std::vector<float> states = model->encode(ids, n_states);
    *sequence = model->session->add(ids, o, false, states.empty() ? nullptr : states.data(), n_states);
  });
}

nt_status nt_step(nt_model* model, const uint64_t* sequences, size_t n, nt_step_output* out, size_t capacity,
                  size_t* n_out) {
  return guarded([&] {
    check_pointer(model, "model");
    check_pointer(n_out, "n_out");
    NT_CHECK(n > 0, "no sequences to step");
    check_pointer(sequences, "sequences");
    check_pointer(out, "out");
    // Room for every output before anything runs: a step cannot be undone.
    NT_CHECK(capacity >= n, "out has room for " + std::to_string(capacity) + " outputs, needs " + std::to_string(n));
    const std::vector<StepOutput> steps = model->session->step(std::vector<uint64_t>(sequences, sequences + n));
    for (size_t i = 0; i < steps.size(); ++i)
      out[i] = nt_step_output{steps[i].id, steps[i].token, steps[i].finished ? 1 : 0};
    *n_out = steps.size();
  });
}

nt_status nt_sequence_tokens(nt_model* model, uint64_t sequence, int32_t* ids, size_t capacity, size_t* length) {
  return guarded([&] {
    check_pointer(model, "model");
    check_pointer(length, "length");
    const std::vector<int32_t> tokens = model->session->tokens(sequence);
    *length = tokens.size();
    if (!ids || capacity < tokens.size())
      throw BufferTooSmall("the ids need room for " + std::to_string(tokens.size()));
    std::copy(tokens.begin(), tokens.end(), ids);
  });
}

nt_status nt_sequence_free(nt_model* model, uint64_t sequence) {
  return guarded([&] {
    check_pointer(model, "model");
    model->session->free(sequence);
  });
}

}  // extern "C"
