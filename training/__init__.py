"""Training: two-stage DeepSpeed training of the Hallo-class model from curated shards."""
