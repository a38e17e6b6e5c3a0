// beam_search.h: Hugging Face generate()'s beam search (transformers 5.x, `_beam_search`), step for step.
//
// Every step runs the live beams through the model together (one pass), scores each beam's candidates
// as its running sum of log-softmax (after the logits processors) plus the candidate's, keeps the best
// 2 x num_beams (more with several EOS ids), moves EOS candidates among the top num_beams to the finished
// hypotheses (score / generated_length ** length_penalty) and continues with the best num_beams others.
// All scores are float32 as in transformers, so the same beams and scores come out.
#pragma once

#include <cstdint>
#include <vector>

#include "sampler.h"
#include "transformer.h"

namespace nextoken {

enum class EarlyStopping { Heuristic, Stop, Never };  // HF's early_stopping = False, True, "never"

struct BeamOptions {
  int num_beams = 4;
  int num_return_sequences = 1;
  int max_new_tokens = 16;
  int min_new_tokens = 0;           // EOS is masked out until this many tokens exist
  double length_penalty = 1.0;
  EarlyStopping early_stopping = EarlyStopping::Heuristic;
  std::vector<int32_t> eos_ids;
  LogitsParams processors;          // only the processors apply (no temperature or filters)
  int32_t forced_bos = -1;          // >= 0: the first token, its score 0 (transformers' ForcedBOS processor)
  bool renormalize = false;         // log-softmax again after the processors (HF's renormalize_logits)
};

struct Hypothesis {
  std::vector<int32_t> tokens;      // generated tokens (the last one an EOS id unless the length ran out)
  float score;                      // sum of the tokens' processed log-probabilities / length ** length_penalty
};

// The num_return_sequences best hypotheses, best first. Checks every option and the prompt first.
// encoder_states (n_states, C): an encoder-decoder's source (null for decoder-only models).
std::vector<Hypothesis> beam_search(const Transformer& model, int n_ctx, const std::vector<int32_t>& prompt,
                                    const BeamOptions& options, int n_threads, const float* encoder_states = nullptr,
                                    int n_states = 0);

}  // namespace nextoken
