"""Readers of weight files: each returns a ModelFile (config, tensors, tokenizer description)."""
