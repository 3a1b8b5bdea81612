"""The one table of Kubernetes secrets the steps and training nodes read (created from manifests/secrets).

Secret name -> {secret key: environment variable}. Pipeline steps get them through kfp-kubernetes
(``pipelines/placement.py``), multi-node training nodes through the TrainJob (``vega3d.train.trainjob``).
"""

S3_SECRET = "vega3d-s3"
S3_SECRET_KEYS = {"access-key": "AWS_ACCESS_KEY_ID", "secret-key": "AWS_SECRET_ACCESS_KEY", "endpoint": "AWS_ENDPOINT_URL"}
MLFLOW_SECRET = "vega3d-mlflow"
MLFLOW_SECRET_KEYS = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
