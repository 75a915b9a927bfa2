"""Room 2: the critic — a video-language model that rates each dimension and explains why."""
