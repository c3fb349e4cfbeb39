#!/usr/bin/env bash
# Build the bids-deface image from ./Dockerfile on a Debian machine with no Docker engine and no
# container registry, using Debian packages only, then smoke-test it with podman. Run as root.
#
#   scripts/build-container.sh [TAG]          (default TAG: localhost/bids-deface:<version>)
#
# Steps (each skipped when already done):
#   1. apt: debootstrap, buildah, podman, runc
#   2. base image localhost/debian:bookworm from debootstrap (minbase) and the Debian mirror apt uses
#   3. the CPU torch wheel into .whl/ (it exists here as a local file, not on PyPI: PyPI's Linux
#      torch 2.13.0 is the CUDA build); elsewhere the Dockerfile takes it from PyTorch's CPU index
#   4. buildah bud --isolation chroot (no daemon, no user namespaces needed)
#   5. podman run --runtime runc ... TAG --version, and TAG --help
#   6. optionally: podman save -o FILE (BIDS_DEFACE_SAVE=FILE), for `singularity build x.sif docker-archive://FILE`
# Environment: BIDS_DEFACE_BUILD_DIR (scratch, default /var/tmp/bids-deface-build),
#              DEBIAN_MIRROR (default: the first URI in /etc/apt/sources.list.d/debian.sources).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "build-container: run as root (debootstrap and buildah chroot need it)" >&2; exit 1; }

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
TAG=${1:-localhost/bids-deface:$version}
WORK=${BIDS_DEFACE_BUILD_DIR:-/var/tmp/bids-deface-build}
BASE=localhost/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# podman/buildah as they work on this kind of machine (no systemd, no cgroup delegation)
PODMAN_RUN=(podman run --rm --runtime runc --cgroup-manager cgroupfs --network none
            --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
mkdir -p "$WORK"

# 1. tools
need=()
for p in debootstrap buildah podman runc; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. base image
if ! podman image exists "$BASE"; then
  echo "build-container: debootstrap bookworm from $MIRROR"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log"
  chroot "$WORK/rootfs" apt-get clean
  rm -rf "$WORK/rootfs"/var/lib/apt/lists/*
  tar -C "$WORK/rootfs" --numeric-owner -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE"
fi

# 3. CPU torch wheel: whatever pip resolves for torch==2.13.0+cpu with this machine's pip config
torch_args=()
mkdir -p .whl
if ls .whl/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 \
   || "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps "torch==2.13.0+cpu" -d .whl 2>/dev/null; then
  torch_args=(--build-arg "TORCH_PIP_ARGS=--find-links /ctx/.whl")
  echo "build-container: torch from $(ls .whl/torch-2.13.0+cpu-*.whl)"
fi

# 4. build
echo "build-container: buildah bud -> $TAG"
# pip in the build reaches PyPI through this machine's HTTPS proxy: lend it the host's CA bundle
ca_args=()
host_ca=$(python3 -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile)' 2>/dev/null || true)
host_ca=$(readlink -f "${PIP_CERT:-$host_ca}" 2>/dev/null || true)
if [ -s "$host_ca" ]; then
  ca_args=(-v "$host_ca:/etc/ssl/build-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/build-ca.crt)
fi
buildah bud --isolation chroot --layers \
  --build-arg "BASE_IMAGE=$BASE" --build-arg "IMAGE_TAG=$TAG" "${torch_args[@]}" "${ca_args[@]}" \
  -t "$TAG" -f Dockerfile .

# 5. smoke test, with no network, as the image's own non-root user
"${PODMAN_RUN[@]}" "$TAG" --version
"${PODMAN_RUN[@]}" --entrypoint id "$TAG"
podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "build-container: %s, %.0f MB\n", "'"$TAG"'", $1/1e6}'

# 6. archive for Singularity/Apptainer
if [ -n "${BIDS_DEFACE_SAVE:-}" ]; then
  podman save --format docker-archive -o "$BIDS_DEFACE_SAVE" "$TAG"
  echo "build-container: saved $BIDS_DEFACE_SAVE"
fi
