"""videolift: align text-to-video models with human feedback (LiFT, arXiv 2412.04814)."""

__version__ = "0.1.0"
