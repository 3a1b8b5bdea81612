"""Pictures of what the model does: the per-run evaluation viewer, generative-feature pictures, training curves."""
