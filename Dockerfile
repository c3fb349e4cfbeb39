# bids-deface as a BIDS App container.
#
#   docker build -t bids-deface .
#   docker run --rm -v /data/bids:/bids:ro -v /data/out:/out bids-deface /bids /out participant
#
# What is inside: Debian bookworm's Python 3.11, CPU-only torch, and bids-deface installed from this
# checkout with the dependency pins of pyproject.toml (the same file the test suite installs from).
# The detector weights and the TemplateFlow templates are package data, baked in; the image needs no
# network at run time. scripts/build-container.sh shows how it was built on a machine with no Docker
# engine and no registry (debootstrap base, buildah, podman).

# A local base can stand in for the registry one: --build-arg BASE_IMAGE=localhost/debian:bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# Local wheel files from .whl/ of the build context, if any (see TORCH_PIP_ARGS below). A stage of
# their own: they are bind-mounted into one step and never land in a layer of the image, and a
# source change does not invalidate the dependency layer (pyproject.toml is there so that the COPY
# has a source when .whl/ is absent).
FROM ${BASE_IMAGE} AS wheels
WORKDIR /wheels
COPY pyproject.toml .whl* /wheels/

FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates dcm2niix libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

# PyPI's Linux torch wheels are CUDA builds (gigabytes of nvidia-* packages): the CPU build comes
# from PyTorch's CPU index, or from a wheel file put in .whl/ of the build context
# (--build-arg TORCH_PIP_ARGS="--find-links /wheels"; the rest still comes from PyPI).
ARG TORCH_SPEC="torch==2.13.0+cpu"
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# Where HTTPS goes through an inspecting proxy, pip needs its CA bundle: mount it into the build and
# name it here (unset by default).
ARG PIP_CERT

# Dependencies first, from pyproject.toml alone, so that a rebuild after a source change reuses them.
# (pyproject.toml names README.md as the long description: an empty stand-in will do here, and
# an edit of the README then costs no reinstall)
COPY pyproject.toml /src/
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    touch /src/README.md \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install ${TORCH_PIP_ARGS} "${TORCH_SPEC}" \
 && /opt/venv/bin/pip install /src \
 && /opt/venv/bin/pip uninstall -y bids-deface

COPY README.md /src/
COPY bids_deface /src/bids_deface
RUN /opt/venv/bin/pip install --no-deps /src \
 && /opt/venv/bin/pip check \
 && rm -rf /src /root/.cache

# The image must carry the detector weights and the templates: the build fails without them.
# The shipped templates get a fixed path: TemplateFlow reads them from there and never downloads
# (a non-empty TEMPLATEFLOW_HOME is taken as an existing cache).
RUN tpl=$(/opt/venv/bin/python -c "from importlib.resources import files; print(files('bids_deface') / 'data' / 'templateflow')") \
 && test -n "$(ls -A "$tpl")" \
 && ln -s "$tpl" /opt/templateflow \
 && /opt/venv/bin/python -c "from bids_deface.features.detect import load_model; print('detector weights sha256', load_model()[1])"

# BIDS_DEFACE_CONTAINER is recorded in the outputs' GeneratedBy.Container (pass the tag you build).
ARG IMAGE_TAG=bids-deface
# NIPYPE_NO_ET: no version check over the network at each nipype interface.
ENV PATH=/opt/venv/bin:$PATH \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=off \
    NIPYPE_NO_ET=1 \
    BIDS_DEFACE_CONTAINER="{\"Type\": \"docker\", \"Tag\": \"${IMAGE_TAG}\"}" \
    HOME=/home/bidsapp \
    MPLCONFIGDIR=/tmp/matplotlib

# A non-root user; its home is open to any uid, since clusters often run images as the caller
# (docker run -u "$(id -u):$(id -g)", Singularity).
RUN useradd --create-home --home-dir /home/bidsapp --uid 1000 --shell /usr/sbin/nologin bidsapp \
 && chmod 1777 /home/bidsapp
USER bidsapp
WORKDIR /tmp

RUN bids-deface --version

ENTRYPOINT ["bids-deface"]
