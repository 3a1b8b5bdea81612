#!/usr/bin/env bash
# Make a local Python base image from Debian packages, for machines that cannot pull the published bases.
#   images/base.sh TAG
# mmdebstrap builds a minimal bookworm (Python 3.11, venv, CA certificates, useradd) from the apt mirror this
# machine is configured with (/etc/apt/sources.list.d/*.sources or /etc/apt/sources.list), and the tarball is
# imported into the daemon at DOCKER_HOST. Reuses TAG when the daemon already holds it.
set -euo pipefail
TAG="${1:?usage: images/base.sh TAG}"
DOCKER=/usr/bin/docker

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base.sh: $TAG already present"
    exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
    echo "base.sh: mmdebstrap missing: apt-get install mmdebstrap (make images-setup)" >&2
    exit 1
fi
# The mirror: the machine's own Debian sources (deb822 or one-line), passed to mmdebstrap as files.
mirrors=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    if [[ -f "$f" ]] && grep -q 'debian' "$f"; then mirrors+=("$f"); fi
done
if [[ ${#mirrors[@]} -eq 0 ]]; then
    mirrors=("http://deb.debian.org/debian")
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "base.sh: mmdebstrap bookworm from ${mirrors[*]}"
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$work/base.tar" "${mirrors[@]}"
"$DOCKER" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$work/base.tar" "$TAG"
echo "base.sh: imported $TAG"
