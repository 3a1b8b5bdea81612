"""Inference on a user's own capture (``vega3d ask``) and the KServe model server (``vega3d serve``)."""
