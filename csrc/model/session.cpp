// session.cpp: see session.h.
#include "session.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "../parallel.h"

namespace nextoken {
namespace {

constexpr int PASS_TOKENS = 512;  // tokens per forward pass: bounds the workspace

int checked_ctx(int n_ctx) {
  NT_CHECK(n_ctx > 0, "n_ctx must be positive, got " + std::to_string(n_ctx));
  return n_ctx;
}

}  // namespace

struct Session::Sequence {
  Sequence(uint64_t id, const Transformer& model, std::vector<int32_t> prompt, const SequenceOptions& options,
           bool pulled)
      : id(id), tokens(std::move(prompt)), n_prompt(int(tokens.size())), options(options),
        sampler(model.config().vocab_size, options.sampling), logits(model.config().vocab_size), pulled(pulled) {}

  uint64_t id;
  std::unique_ptr<KVCache> cache;
  std::shared_ptr<const KVCache> cross;  // encoder-decoder: the source's keys and values (forks share them)
  // Prompt, then the generated tokens, less those a context shift dropped from the cache (so that an
  // endless stream keeps n_ctx of them, and the penalties look at what the model sees): the cache holds
  // tokens[0 .. cache->length), the rest are still to be fed.
  std::vector<int32_t> tokens;
  int n_prompt;
  int n_generated = 0;
  int n_shifted = 0;             // positions context shifts dropped
  SequenceOptions options;
  Sampler sampler;
  std::vector<float> logits;
  bool finished = false;
  bool pulled;
  std::deque<StepOutput> queue;  // pulled: tokens stepped but not yet taken by next()

  int n_fed() const { return cache->length; }
  int n_pending() const { return int(tokens.size()) - n_fed(); }
};

Session::Session(std::shared_ptr<const Transformer> model, int n_ctx, int n_threads)
    : model_(std::move(model)), n_ctx_(checked_ctx(n_ctx)), workspace_(model_->config(), PASS_TOKENS) {
  NT_CHECK(n_ctx <= model_->max_positions(), "n_ctx " + std::to_string(n_ctx) + " exceeds the positions the model was set up for (" +
                                                 std::to_string(model_->max_positions()) + ")");
  set_n_threads(n_threads);
}

Session::~Session() = default;

void Session::set_n_threads(int n) {
  n_threads_.store(check_threads(n));
}

Session::Sequence& Session::find(uint64_t id) {
  auto it = sequences_.find(id);
  NT_CHECK(it != sequences_.end(), "no sequence " + std::to_string(id) + " (never added, or freed)");
  return *it->second;
}

uint64_t Session::add(std::vector<int32_t> prompt, const SequenceOptions& o, bool pulled, const float* encoder_states,
                      int n_states) {
  const Transformer& m = *model_;
  NT_CHECK(m.config().cross_attention == (encoder_states != nullptr),
           m.config().cross_attention ? "this model decodes from encoder states: give the source (or encoder_hidden_states)"
                                      : "encoder_hidden_states given to a decoder-only model");
  NT_CHECK(!encoder_states || n_states > 0, "the encoder states are empty");
  if (encoder_states) NT_CHECK(!o.context_shift, "context_shift is for decoder-only models");
  const int n_prompt = int(prompt.size()), vocab = m.config().vocab_size;
  NT_CHECK(n_prompt > 0, "the prompt is empty");
  NT_CHECK(o.min_new_tokens >= 0, "min_new_tokens must be >= 0, got " + std::to_string(o.min_new_tokens));
  NT_CHECK(o.logprobs >= -1 && o.logprobs <= vocab, "logprobs must be in [0, vocab size], got " + std::to_string(o.logprobs));
  for (int32_t id : o.eos_ids)
    NT_CHECK(id >= 0 && id < vocab, "EOS id " + std::to_string(id) + " is outside the vocabulary");
  NT_CHECK(o.forced_bos < vocab, "forced_bos_token_id is outside the vocabulary");
  check_sampling_params(o.sampling, vocab);
  m.check_tokens(prompt.data(), n_prompt, 0, n_ctx_);
  if (o.context_shift) {
    NT_CHECK(m.config().positions != Positions::Learned,
             "context_shift needs relative positions (RoPE or none): this model's positions are learned, absolute");
    NT_CHECK(o.n_keep >= 0 && o.n_keep <= n_ctx_ - 2,
             "n_keep must be in [0, n_ctx - 2] so that a context shift frees room, got " + std::to_string(o.n_keep));
  } else {
    NT_CHECK(o.max_new_tokens >= 0, "max_new_tokens must be >= 0 (no limit needs context_shift), got " +
                                        std::to_string(o.max_new_tokens));
    NT_CHECK(int64_t(n_prompt) + o.max_new_tokens <= n_ctx_,
             "context overflow: a prompt of " + std::to_string(n_prompt) + " tokens plus max_new_tokens = " +
                 std::to_string(o.max_new_tokens) + " exceeds n_ctx = " + std::to_string(n_ctx_));
    if (o.max_new_tokens > 0) {
      // Learned positions end somewhere: the generated tokens must have positions too.
      const int32_t last = 0;
      m.check_tokens(&last, 1, n_prompt + o.max_new_tokens - 1, n_ctx_);
    }
  }
  SequenceOptions options = o;  // each EOS id once: the EOS mask is undone id by id
  std::sort(options.eos_ids.begin(), options.eos_ids.end());
  options.eos_ids.erase(std::unique(options.eos_ids.begin(), options.eos_ids.end()), options.eos_ids.end());
  std::lock_guard<std::mutex> lock(busy_);
  const uint64_t id = ++last_id_;
  auto s = std::make_unique<Sequence>(id, m, std::move(prompt), options, pulled);
  s->finished = o.max_new_tokens == 0;
  if (encoder_states) s->cross = m.cross_cache(encoder_states, n_states, n_threads());
  // Reuse the last freed cache for the prefix this prompt shares with it (at least one token must run,
  // for the logits).
  if (retained_ && !s->cross) {  // a cached prefix is only valid for the same source: decoder-only
    const size_t limit = std::min(retained_tokens_.size(), s->tokens.size() - 1);
    size_t common = 0;
    while (common < limit && retained_tokens_[common] == s->tokens[common]) ++common;
    if (common == retained_tokens_.size()) {  // the prompt extends it: take it over
      s->cache = std::move(retained_);
      retained_tokens_.clear();
    } else if (common > 0) {  // a shorter common part: copy it, keep the cache for a better match
      s->cache = std::make_unique<KVCache>(m.config(), n_ctx_);
      const int held = retained_->length;
      retained_->length = int(common);
      s->cache->copy_prefix(*retained_);
      retained_->length = held;
    }
  }
  if (!s->cache) s->cache = std::make_unique<KVCache>(m.config(), n_ctx_);
  sequences_.emplace(id, std::move(s));
  return id;
}

void Session::shift_context(Sequence& s) {
  KVCache& cache = *s.cache;
  const int keep = std::min(s.options.n_keep, cache.length), discard = (cache.length - keep) / 2;
  const int from = keep + discard;
  cache.move_down(from, discard);
  model_->rerotate_keys(cache, keep, cache.length, discard);
  s.tokens.erase(s.tokens.begin() + keep, s.tokens.begin() + from);
  s.n_shifted += discard;
}

void Session::run(const std::vector<Sequence*>& seqs, std::vector<StepOutput>& outs) {
  for (Sequence* s : seqs)
    if (s->cache->length + s->n_pending() > s->cache->capacity) shift_context(*s);  // add() checked it may
  // If a pass fails (out of memory), every cache goes back to where it was: nothing half-done.
  std::vector<int> lengths;
  for (Sequence* s : seqs) lengths.push_back(s->cache->length);
  try {
    forward_passes(seqs);
  } catch (...) {
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i]->cache->length = lengths[i];
    throw;
  }
  sample(seqs, outs);
}

void Session::forward_passes(const std::vector<Sequence*>& seqs) {
  // Passes of up to PASS_TOKENS tokens; a long prompt is split over passes and gets its logits in the last.
  // A pass moves each cache's length on, so every pass starts from the tokens still pending.
  std::vector<ForwardChunk> chunks;
  size_t i = 0;
  while (i < seqs.size()) {
    chunks.clear();
    int room = workspace_.batch;
    while (i < seqs.size() && room > 0 && int(chunks.size()) < MAX_ATTENTION_SEQS) {
      Sequence& s = *seqs[i];
      const int pending = s.n_pending(), n = std::min(room, pending);
      const bool last = n == pending;
      chunks.push_back(ForwardChunk{s.cache.get(), s.tokens.data() + s.n_fed(), n, last ? s.logits.data() : nullptr, false});
      chunks.back().cross = s.cross.get();
      room -= n;
      if (last) ++i;
    }
    model_->forward_batch(chunks.data(), int(chunks.size()), workspace_, n_threads());
    tokens_run_ += uint64_t(workspace_.batch - room);
  }
}

void Session::sample(const std::vector<Sequence*>& seqs, std::vector<StepOutput>& outs) {
  const int V = model_->config().vocab_size;
  for (Sequence* sp : seqs) {
    Sequence& s = *sp;
    float* logits = s.logits.data();
    const SequenceOptions& o = s.options;
    StepOutput out;
    out.id = s.id;
    // EOS is masked while min_new_tokens are missing; the raw logits stay for the log-probabilities.
    std::vector<std::pair<int32_t, float>> masked;
    if (s.n_generated < o.min_new_tokens)
      for (int32_t id : o.eos_ids) {
        masked.emplace_back(id, logits[id]);
        logits[id] = -INFINITY;
      }
    if (s.n_generated == 0 && s.n_prompt == 1 && o.forced_bos >= 0) {  // HF: when the decoder holds its start only
      out.token = o.forced_bos;  // transformers' ForcedBOSTokenLogitsProcessor leaves it the only choice
    } else {
      out.token = s.sampler.sample(logits, s.tokens.data(), int(s.tokens.size()), uint64_t(s.n_generated));
    }
    for (const auto& [id, value] : masked) logits[id] = value;
    if (o.logprobs >= 0) out.logprob = log_probabilities(logits, V, out.token, o.logprobs, out.top);
    s.tokens.push_back(out.token);
    ++s.n_generated;
    const bool eos = std::find(o.eos_ids.begin(), o.eos_ids.end(), out.token) != o.eos_ids.end();
    s.finished = out.finished = eos || s.n_generated == o.max_new_tokens;
    outs.push_back(std::move(out));
  }
}

std::vector<StepOutput> Session::step(const std::vector<uint64_t>& ids) {
  std::lock_guard<std::mutex> lock(busy_);
  std::vector<Sequence*> seqs;
  std::vector<StepOutput> outs;
  if (ids.empty()) {
    for (auto& [id, s] : sequences_)
      if (!s->pulled && !s->finished) seqs.push_back(s.get());
  } else {
    for (uint64_t id : ids) {
      Sequence& s = find(id);
      NT_CHECK(!s.pulled, "sequence " + std::to_string(id) + " belongs to a generate()/stream() call: it cannot be stepped");
      NT_CHECK(std::count(ids.begin(), ids.end(), id) == 1, "sequence " + std::to_string(id) + " is listed twice");
      NT_CHECK(!s.finished, "sequence " + std::to_string(id) + " has finished: free it");
      seqs.push_back(&s);
    }
  }
  if (!seqs.empty()) run(seqs, outs);
  return outs;
}

StepOutput Session::next(uint64_t id) {
  std::lock_guard<std::mutex> lock(busy_);
  Sequence& s = find(id);
  NT_CHECK(s.pulled, "sequence " + std::to_string(id) + " is driven by step(), not next()");
  if (s.queue.empty() && !s.finished) {
    // Every pulled sequence that waits for a token runs in this pass; the others take theirs from their
    // queue when their callers come.
    std::vector<Sequence*> waiting;
    for (auto& [other_id, other] : sequences_)
      if (other->pulled && !other->finished && other->queue.empty()) waiting.push_back(other.get());
    std::vector<StepOutput> outs;
    run(waiting, outs);
    for (size_t i = 0; i < outs.size(); ++i) waiting[i]->queue.push_back(std::move(outs[i]));
  }
  if (s.queue.empty()) return StepOutput{id};
  StepOutput out = std::move(s.queue.front());
  s.queue.pop_front();
  return out;
}

uint64_t Session::fork(uint64_t id, uint64_t seed) {
  std::lock_guard<std::mutex> lock(busy_);
  Sequence& s = find(id);
  NT_CHECK(!s.pulled, "sequence " + std::to_string(id) + " belongs to a generate()/stream() call: it cannot be forked");
  NT_CHECK(!s.finished, "sequence " + std::to_string(id) + " has finished: nothing to fork");
  SequenceOptions options = s.options;
  options.sampling.seed = seed;
  const uint64_t new_id = ++last_id_;
  auto copy = std::make_unique<Sequence>(new_id, *model_, s.tokens, options, false);
  copy->n_prompt = s.n_prompt;
  copy->n_generated = s.n_generated;
  copy->n_shifted = s.n_shifted;
  copy->cache = std::make_unique<KVCache>(model_->config(), n_ctx_);
  copy->cache->copy_prefix(*s.cache);
  copy->cross = s.cross;
  sequences_.emplace(new_id, std::move(copy));
  return new_id;
}

void Session::free(uint64_t id) {
  std::lock_guard<std::mutex> lock(busy_);
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;  // freeing twice is harmless
  Sequence& s = *it->second;
  if (s.n_shifted == 0 && s.cache->length > 0 && !s.cross) {  // the cache is what tokens[0 .. length) alone give
    retained_tokens_.assign(s.tokens.begin(), s.tokens.begin() + s.cache->length);
    retained_ = std::move(s.cache);
  }
  sequences_.erase(it);
}

std::vector<int32_t> Session::tokens(uint64_t id) {
  std::lock_guard<std::mutex> lock(busy_);
  return find(id).tokens;
}

bool Session::finished(uint64_t id) {
  std::lock_guard<std::mutex> lock(busy_);
  return find(id).finished;
}

void Session::forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits,
                      const float* encoder_states, int n_states) {
  std::lock_guard<std::mutex> lock(busy_);
  model_->check_tokens(tokens, T, pos0, n_ctx_);
  NT_CHECK(model_->config().cross_attention == (encoder_states != nullptr),
           model_->config().cross_attention ? "this model decodes from encoder states: give encoder_hidden_states"
                                            : "encoder_hidden_states given to a decoder-only model");
  NT_CHECK(!encoder_states || (n_states > 0 && pos0 == 0),
           "with encoder_hidden_states, forward() runs the whole decoder input from start_pos 0");
  if (pos0 > 0) {
    const int held = forward_cache_ ? forward_cache_->length : 0;
    NT_CHECK(pos0 <= held, "start_pos " + std::to_string(pos0) + " skips positions: earlier forward() calls left " +
                               std::to_string(held) + " tokens");
  }
  if (!forward_cache_) forward_cache_ = std::make_unique<KVCache>(model_->config(), n_ctx_);
  std::unique_ptr<KVCache> cross;
  if (encoder_states) cross = model_->cross_cache(encoder_states, n_states, n_threads());
  model_->forward(*forward_cache_, workspace_, tokens, T, pos0, logits, all_logits, n_threads(), cross.get());
}

}  // namespace nextoken
