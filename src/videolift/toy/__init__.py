"""The toy world: a synthetic video domain with an oracle rater, for end-to-end runs on a CPU."""
