#!/usr/bin/env bash
# Set up everything bids-deface needs on a fresh Debian machine with Python 3.11:
# Debian packages (when run as root), a virtual environment in .venv with the pinned
# Python dependencies, and the real test heads fetched into the cache.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# 1. Debian packages listed in scripts/apt-packages.txt
mapfile -t pkgs < <(grep -vE '^\s*(#|$)' scripts/apt-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

# 2. Python environment
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned, so that no CUDA build is ever pulled in
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
# The development tools (training/, tools/, benchmarks/) are not installed: the venv finds
# them in the checkout.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$root" > "$site/bids_deface_checkout.pth"

# 3. Real heads (DATA.md) into the cache
.venv/bin/python -m tools.heads >/dev/null
echo "setup: ready ($root/.venv)"
