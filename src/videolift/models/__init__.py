"""Model specifications: T2V families (CogVideoX) and VLM families, plus tiny builders for tests."""
