#!/usr/bin/env bash
# Build vega3d's images into the Docker daemon at DOCKER_HOST (`make images` runs this inside images/dockerd.sh run).
#   images/build.sh [cpu] [cuda]      default: both; prints each build's time and the images' sizes
# Each image is built on its production base (the ARG defaults of its Dockerfile) when the daemon has it or can
# pull it; otherwise on a Debian base made here with mmdebstrap (images/base.sh), and for CUDA with torch and
# its CUDA libraries from the package index, no prebuilt DeepSpeed ops and no flash-attn (OPS=jit: enough to
# check the image's imports, not to train on GPUs; build on the PyTorch devel image for that).
# Environment:
#   VEGA3D_CA_BUNDLE   CA bundle (PEM) pip must trust inside the build (default: this machine's system bundle)
#   VEGA3D_TORCH_WHEEL_DIR   folder holding torch-<version>+cpu-*.whl (default: pip's configured find-links)
#   VEGA3D_REGISTRY    also tag the images as $VEGA3D_REGISTRY/vega3d-{cpu,cuda}:<version> (push with make push-images)
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1
LOCAL_BASE=vega3d-base:bookworm
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"

# The default of `ARG NAME=...` in a Dockerfile, with ${PYTORCH_TAG} expanded.
arg_default() {
    local value tag
    value="$(sed -n "s/^ARG $2=//p" "images/$1" | head -n1 | tr -d '"')"
    tag="$(sed -n 's/^ARG PYTORCH_TAG=//p' "images/$1" | head -n1)"
    echo "${value//\$\{PYTORCH_TAG\}/$tag}"
}

# Whether the daemon holds IMAGE or can pull it.
available() {
    "$DOCKER" image inspect "$1" >/dev/null 2>&1 || timeout 120 "$DOCKER" pull -q "$1" >/dev/null 2>&1
}

common_args() {
    local ca="${VEGA3D_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
    args=(--network=host --progress=plain)
    if [[ -f "$ca" ]]; then args+=(--secret "id=ca,src=$ca"); fi
}

# A local torch wheel, hard-linked (or copied) into the build context's images/wheels/, when the PyTorch index
# cannot be reached.
torch_args() {
    local version wheel dirs dir
    version="$(arg_default Dockerfile.cpu TORCH_VERSION)"
    if timeout 20 python3 -c "import urllib.request as u; u.urlopen('$(arg_default Dockerfile.cpu TORCH_INDEX)/torch/', timeout=15)" 2>/dev/null; then
        return
    fi
    dirs="${VEGA3D_TORCH_WHEEL_DIR:-$(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p" | tr ' ' '\n')}"
    for dir in $dirs; do
        wheel="$(find "${dir#file://}" -maxdepth 1 -name "torch-${version}+cpu-*.whl" 2>/dev/null | head -n1)"
        if [[ -n "$wheel" ]]; then
            rm -rf images/wheels && mkdir -p images/wheels
            ln -f "$wheel" images/wheels/ 2>/dev/null || cp "$wheel" images/wheels/
            args+=(--build-arg TORCH_WHEELS=images/wheels)
            echo "build.sh: torch from the local wheel $wheel"
            return
        fi
    done
    echo "build.sh: the PyTorch index is unreachable and no torch-${version}+cpu wheel was found" \
         "(set VEGA3D_TORCH_WHEEL_DIR)" >&2
    exit 1
}

local_base() {
    images/base.sh "$LOCAL_BASE"
    args+=(--build-arg "BASE_IMAGE=$LOCAL_BASE")
}

build() {
    local kind="$1" start
    common_args
    if [[ "$kind" == cpu ]]; then
        available "$(arg_default Dockerfile.cpu BASE_IMAGE)" || local_base
        torch_args
    elif ! available "$(arg_default Dockerfile.cuda BASE_IMAGE)" || ! available "$(arg_default Dockerfile.cuda BUILD_IMAGE)"; then
        local_base
        args+=(--build-arg OPS=jit --build-arg EXTRAS=all)
    fi
    local tags=(-t "vega3d-$kind:$VERSION")
    if [[ -n "${VEGA3D_REGISTRY:-}" ]]; then tags+=(-t "$VEGA3D_REGISTRY/vega3d-$kind:$VERSION"); fi
    echo "build.sh: building vega3d-$kind:$VERSION (${args[*]})"
    start=$SECONDS
    nice -n 10 "$DOCKER" build "${args[@]}" "${tags[@]}" -f "images/Dockerfile.$kind" . 2>&1 \
        | grep --line-buffered -v -E '^#[0-9]+ (sha256|extracting)'
    echo "build.sh: vega3d-$kind:$VERSION built in $((SECONDS - start)) s"
}

kinds=("$@")
if [[ ${#kinds[@]} -eq 0 ]]; then kinds=(cpu cuda); fi
for kind in "${kinds[@]}"; do
    case "$kind" in
        cpu|cuda) build "$kind" ;;
        *) echo "build.sh: unknown image '$kind' (cpu or cuda)" >&2; exit 2 ;;
    esac
done
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^([^ ]*/)?vega3d-(cpu|cuda):'
