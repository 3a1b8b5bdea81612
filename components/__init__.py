"""Kubeflow components: one thin, documented wrapper per pipeline stage around a function of vega3d.stages.

Every component is a lightweight Python component whose base image already holds the package
(``install_kfp_package=False``, no ``packages_to_install``), so the same component runs in the cluster and
under ``kfp.local.SubprocessRunner(use_venv=False)``. Large things move as URIs under the storage root;
artifacts carry metrics, reports and Dataset/Model artifacts whose metadata points at the URI.
"""
