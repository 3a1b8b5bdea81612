"""Frozen generative feature sources (SPEC.md section 3) and the offline feature store.

Public API (import from the submodules; this package stays light so ``vega3d --help`` stays fast):

* ``registry.build_encoder(cfg: GenerativeConfig, grid, device) -> GenerativeEncoder`` with ``.channels``,
  ``.encode(frames [V, 3, H, W] in [0, 1], scene, frame_ids) -> [V, C, grid, grid]``; ``registry.PAPER_CHANNELS``.
* ``source.open_feature_source(cfg, grid, device, data_root)`` -> ``.get(scene, frame_ids, frames)`` (online
  encoder + LRU cache, or offline store by ``generative.feature_id``) and ``.channels``.
* ``store.FeatureStore(uri).get(key) / .put(key, tensor, scene, frame_ids)``, ``store.feature_key``,
  ``store.FeatureSpec(...).feature_id``, ``store.validate_feature_set``.
* ``extract.run_extract(cfg, store_uri, device, ...)`` (the extract API: ``vega3d extract`` and the pipeline's
  extract stage), ``extract.extract_features(cfg, encoder, store_uri, ...)`` with a given encoder.
* tiny random checkpoints of every family in the real formats: ``vega3d.testing.tiny_generative``.
"""
