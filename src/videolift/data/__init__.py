"""Room 1: data and annotation — HRA datasets, prompt sets, video generation, the annotation app."""
