"""Container images of the components (built from images/; override with environment variables)."""

import os

VERSION = "0.1.0"
CPU_IMAGE = os.environ.get("VEGA3D_CPU_IMAGE", f"ghcr.io/vega3d/vega3d-cpu:{VERSION}")
CUDA_IMAGE = os.environ.get("VEGA3D_CUDA_IMAGE", f"ghcr.io/vega3d/vega3d-cuda:{VERSION}")
