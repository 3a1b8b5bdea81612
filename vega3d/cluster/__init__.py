"""Cluster-side helpers: submitting the pipeline to Kubeflow Pipelines and reading its gate result."""
