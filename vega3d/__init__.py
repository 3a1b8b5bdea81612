"""VEGA-3D: video diffusion features for 3D scene understanding in a video LLM."""

__version__ = "0.1.0"
