/* nextoken.h: the C API of libnextoken, for programs in C, C++, Rust, Go... that embed the engine.
 *
 * A model (nt_model) is loaded once from a GGUF file or a Hugging Face folder and shared by any number
 * of threads; each generation is a sequence of the model's session, so concurrent calls are safe and
 * calls that overlap run in one forward pass. Every function returns NT_OK or an error code; the message of the calling
 * thread's last error is nt_last_error(). No function aborts or throws across this boundary, and a call
 * that fails changes nothing.
 *
 * Encoder-decoder models (T5, BART, mBART, Marian folders): the prompt of nt_generate, nt_beam_search and
 * nt_sequence_add is the source, which the encoder reads; the decoder starts from the folder's
 * decoder_start_token_id, with its forced_bos_token_id, bad_words_ids and renormalize_logits, as the Python
 * API's generate(source). nt_encode gives the encoder's states and nt_generate_encoded continues from
 * states; an image captioning model (vision-encoder-decoder) takes only those: the C API does not read
 * images (the Python API's encode(image=...) gives their states).
 */
#ifndef NEXTOKEN_H
#define NEXTOKEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NEXTOKEN_API_VERSION 1

typedef enum {
  NT_OK = 0,
  NT_ERROR_INVALID_ARGUMENT = 1, /* a bad parameter, id, size or handle */
  NT_ERROR_MODEL_FILE = 2,       /* the file is missing, unreadable, malformed or of an unsupported model */
  NT_ERROR_OUT_OF_MEMORY = 3,
  NT_ERROR_BUFFER_TOO_SMALL = 4, /* the output did not fit; the size it needs is returned */
  NT_ERROR_INTERNAL = 5
} nt_status;

typedef struct nt_model nt_model;

/* The message of this thread's last error ("" if none); valid until this thread's next call. */
const char* nt_last_error(void);

/* ---- loading ---- */
typedef struct {
  int32_t n_ctx;            /* longest sequence (prompt + new tokens); default 2048 */
  int32_t n_threads;        /* 0 (default): every core this process may run on; at most 512 */
  const char* compute_type; /* "float32" (default: exact) or "int8" (activations int8 per block, faster) */
  const char* kv_cache;     /* "f32" (default), "f16", "bf16" or "q8_0" */
  const char* packed_cache; /* int8, GGUF: a file that keeps the repacked weights for the next load (NULL: none) */
} nt_load_options;

/* Fills *options with the defaults. */
void nt_load_options_init(nt_load_options* options);
/* Loads a GGUF file, or a Hugging Face folder (config.json and safetensors weights): llama, mistral, qwen2,
 * gpt2, gemma3, t5, bart, mbart, marian (options may be NULL: the defaults); *model is set only on NT_OK.
 * A folder's tokenizer.json is read when it is a byte-level BPE (GPT-2's pre-tokenizer, optionally after
 * individual digits) or a SentencePiece BPE with byte fallback (Gemma's and Llama 2's forms); with another
 * (T5's Unigram, Marian's .spm files...), the model loads and nt_tokenize / nt_detokenize fail, saying why. */
nt_status nt_model_load(const char* path, const nt_load_options* options, nt_model** model);
/* Frees a model (NULL is allowed); no call on it may be running. */
void nt_model_free(nt_model* model);

int32_t nt_model_vocab_size(const nt_model* model);
/* The width of the hidden states (d_model): an encoder's states are n x this floats. */
int32_t nt_model_dim(const nt_model* model);
int32_t nt_model_n_ctx(const nt_model* model);
/* The ids that end a generation (EOS, end of turn): writes up to `capacity`, returns how many there are. */
size_t nt_model_eos_ids(const nt_model* model, int32_t* ids, size_t capacity);

/* ---- text ---- */
/* The ids of `length` bytes of UTF-8 `text` (no NUL needed), as the Python API's tokenize(): special tokens
 * written in the text (<|im_start|>, <bos>...) read as themselves when parse_special is nonzero, else as
 * plain text; the BOS first when add_bos is nonzero and the model's file asks for one. *n_ids: the ids
 * written, or, with NT_ERROR_BUFFER_TOO_SMALL, how many there are (ids may be NULL to ask). */
nt_status nt_tokenize(const nt_model* model, const char* text, size_t length, int parse_special, int add_bos,
                      int32_t* ids, size_t capacity, size_t* n_ids);
/* The UTF-8 text of `ids` (control tokens such as BOS/EOS left out), NUL-terminated in `text`.
 * *length: the bytes written without the NUL, or, with NT_ERROR_BUFFER_TOO_SMALL, the bytes needed. */
nt_status nt_detokenize(const nt_model* model, const int32_t* ids, size_t n_ids, char* text, size_t capacity,
                        size_t* length);

/* ---- one forward pass ---- */
/* The logits (vocab_size floats, in a buffer the caller owns) of the last of n_ids tokens (decoder-only
 * models). */
nt_status nt_forward(nt_model* model, const int32_t* ids, size_t n_ids, float* logits, size_t capacity);

/* ---- generation ---- */
typedef struct {
  float temperature;        /* 0: greedy (default) */
  int32_t top_k;            /* 0: off */
  float top_p;              /* 1: off */
  float min_p;              /* 0: off */
  float typical_p;          /* 1: off */
  float repetition_penalty; /* 1: off */
  float presence_penalty;   /* 0: off */
  float frequency_penalty;  /* 0: off */
  int32_t no_repeat_ngram_size; /* 0: off */
  uint64_t seed;            /* draws depend on (seed, step) only */
} nt_sampling;

/* Fills *sampling with the defaults (greedy). */
void nt_sampling_init(nt_sampling* sampling);

/* Up to max_new_tokens new ids after the prompt (sampling may be NULL: greedy), stopping after an EOS id
 * (which is included). Writes them to `out` (capacity >= max_new_tokens) and their count to *n_out. */
nt_status nt_generate(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                      const nt_sampling* sampling, int32_t* out, size_t capacity, size_t* n_out);

/* ---- encoder-decoder models ---- */
/* The encoder's last hidden states of a source of n_source ids: n_source * nt_model_dim floats in `states`
 * (capacity: how many it has room for), row after row, as the Python API's encode(ids). */
nt_status nt_encode(nt_model* model, const int32_t* source, size_t n_source, float* states, size_t capacity);
/* nt_generate from the encoder's states (n_states rows of nt_model_dim floats) instead of a source: the
 * Python API's generate(encoder_hidden_states=...). */
nt_status nt_generate_encoded(nt_model* model, const float* states, size_t n_states, int32_t max_new_tokens,
                              const nt_sampling* sampling, int32_t* out, size_t capacity, size_t* n_out);

/* ---- beam search: Hugging Face generate(num_beams=...), the same beams and scores ---- */
typedef struct {
  int32_t num_beams;            /* 2 .. 512; default 4 */
  int32_t num_return_sequences; /* 1 .. num_beams; default 1 */
  double length_penalty;        /* a finished beam scores (sum of log-probabilities) / length ** this; default 1 */
  int32_t early_stopping;       /* 0 (default): HF's early_stopping=False; 1: True; 2: "never" */
  int32_t min_new_tokens;       /* EOS is masked out until this many new tokens exist; default 0 */
  float repetition_penalty;     /* 1: off */
  int32_t no_repeat_ngram_size; /* 0: off */
} nt_beam_options;

/* Fills *options with the defaults. */
void nt_beam_options_init(nt_beam_options* options);
/* The num_return_sequences best continuations of the prompt (up to max_new_tokens new ids each, the last
 * an EOS id unless the length ran out), best first: continuation i at out[i * max_new_tokens ...],
 * lengths[i] ids long, scoring scores[i]. Capacities: out num_return_sequences * max_new_tokens ids,
 * lengths and scores num_return_sequences entries (n_capacity). options may be NULL: the defaults. */
nt_status nt_beam_search(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                         const nt_beam_options* options, int32_t* out, size_t capacity, int32_t* lengths,
                         float* scores, size_t n_capacity);

/* ---- the step API: sequences a caller schedules itself (a server, a speculative decoder) ---- */
typedef struct {
  uint64_t sequence;
  int32_t token;    /* -1: none (the sequence had finished) */
  int32_t finished; /* 1: this token ended the sequence (EOS or max_new_tokens) */
} nt_step_output;

/* A new sequence continuing `prompt`; checks everything, computes nothing. */
nt_status nt_sequence_add(nt_model* model, const int32_t* prompt, size_t n_prompt, int32_t max_new_tokens,
                          const nt_sampling* sampling, uint64_t* sequence);
/* One token for each of the n sequences in one forward pass: out[i] (capacity >= n) for sequences[i];
 * *n_out = n. */
nt_status nt_step(nt_model* model, const uint64_t* sequences, size_t n, nt_step_output* out, size_t capacity,
                  size_t* n_out);
/* The prompt and generated ids of a sequence (less those a context shift dropped: the ones the model
 * still sees); *length as in nt_detokenize. */
nt_status nt_sequence_tokens(nt_model* model, uint64_t sequence, int32_t* ids, size_t capacity, size_t* length);
/* Ends a sequence (its cache is kept for a later prompt that extends it). */
nt_status nt_sequence_free(nt_model* model, uint64_t sequence);

#ifdef __cplusplus
}
#endif

#endif /* NEXTOKEN_H */
