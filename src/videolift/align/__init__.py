"""Room 3: alignment — reward-weighted likelihood fine-tuning of a text-to-video model."""
