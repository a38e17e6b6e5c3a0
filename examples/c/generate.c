/* generate MODEL MAX_NEW_TOKENS ID ID ...   (MODEL: a .gguf file or a Hugging Face folder)
 * Loads the model, greedily generates up to MAX_NEW_TOKENS after the prompt ids and prints the new ids
 * separated by spaces. Build against the installed package:
 *   cc generate.c -I"$(python -c 'import nextoken; print(nextoken.get_include())')" \
 *      "$(python -c 'import nextoken; print(nextoken.get_library())')" -Wl,-rpath,<its folder> -o generate
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <nextoken/nextoken.h>

static int parse_int(const char* s, long* value) {
  char* end;
  errno = 0;
  *value = strtol(s, &end, 10);
  return errno == 0 && end != s && *end == '\0';
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL MAX_NEW_TOKENS ID [ID ...]   (MODEL: a .gguf file or a Hugging Face folder)\n", argv[0]);
    return 2;
  }
  long max_new;
  if (!parse_int(argv[2], &max_new) || max_new <= 0 || max_new > 1000000) {
    fprintf(stderr, "MAX_NEW_TOKENS must be a positive integer, got '%s'\n", argv[2]);
    return 2;
  }
  const int n_prompt = argc - 3;
  int32_t* prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
  int32_t* out = malloc(sizeof(int32_t) * (size_t)max_new);
  if (!prompt || !out) return 1;
  for (int i = 0; i < n_prompt; ++i) {
    long id;
    if (!parse_int(argv[3 + i], &id) || id < 0 || id > INT32_MAX) {
      fprintf(stderr, "token ids must be non-negative integers, got '%s'\n", argv[3 + i]);
      return 2;
    }
    prompt[i] = (int32_t)id;
  }

  nt_load_options options;
  nt_load_options_init(&options);
  options.n_ctx = n_prompt + (int32_t)max_new;
  nt_model* model = NULL;
  if (nt_model_load(argv[1], &options, &model) != NT_OK) {
    fprintf(stderr, "error: %s\n", nt_last_error());
    return 1;
  }
  size_t n_out = 0;
  const nt_status status = nt_generate(model, prompt, (size_t)n_prompt, (int32_t)max_new, NULL, out, (size_t)max_new, &n_out);
  if (status != NT_OK) {
    fprintf(stderr, "error: %s\n", nt_last_error());
    nt_model_free(model);
    return 1;
  }
  for (size_t i = 0; i < n_out; ++i) printf(i ? " %d" : "%d", out[i]);
  printf("\n");
  nt_model_free(model);
  free(prompt);
  free(out);
  return 0;
}
