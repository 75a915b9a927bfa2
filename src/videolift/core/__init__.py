"""Shared core: the rating schema, reward mapping, JSONL and video I/O, errors."""
