"""The VEGA-3D model: config, position encoding, fusion, grounding, prompts/tokenizer, checkpoints.

Import the pieces from their modules (``vega3d.model.modeling_vega3d`` etc.); this package file stays
light so that importing ``vega3d.model.prompts`` does not load torch models.
"""
