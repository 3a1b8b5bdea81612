"""The two small decision components around the extract step."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def features_needed(config: str) -> bool:
    """Whether the run reads offline generative features (so the extract step must run).

    Args:
        config: Resolved run config (YAML) from setup_run.
    """
    from vega3d import stages

    return stages.needs_offline_features(config)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def no_features() -> str:
    """Feature id of runs without offline features (online encoder or no generative branch): empty."""
    return ""
