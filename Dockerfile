# The image every node of cluster/gcp.yaml and cluster/local.yaml runs (head and GPU workers):
# Python 3.11, the CUDA build of torch 2.13.0, every other dependency at the exact pins of
# pyproject.toml, and nisca itself. Build and push: see cluster/README.md.
#
# Base image: python:3.11-slim, not nvidia/cuda. The CUDA wheels of torch carry their own CUDA
# runtime, cuBLAS, cuDNN and NCCL (as nvidia-* wheels), so an nvidia/cuda base would only add a
# second, unused copy of those libraries (several GB) and would still need Python 3.11 added.
# The GPU driver (libcuda) is not in any image: the NVIDIA Container Toolkit of the host mounts it
# at `docker run --gpus all`. torch 2.13.0 publishes CUDA 12.6 and 13.0 builds (13.2 experimental);
# we take cu130, which needs a host driver of R580 or newer: the host image family in
# cluster/gcp.yaml (common-cu129-ubuntu-2204-nvidia-580) has it. For older drivers build with
# --build-arg TORCH_CUDA=cu126.
#
# Two stages: the builder fills a virtual environment (pip, wheels, build tools stay there); the
# runtime stage copies only that environment onto a fresh slim image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_CUDA=cu130
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# 1. torch first, pinned to pyproject's version, from the PyTorch CUDA index. pip keeps this
#    2.13.0+cu130 build below: `torch==2.13.0` in pyproject is satisfied by it (PEP 440 ignores the
#    local +cu130 label), so nothing re-resolves torch from PyPI.
RUN pip install "torch==2.13.0" --index-url "https://download.pytorch.org/whl/${TORCH_CUDA}"

# 2. Every other dependency, read from pyproject.toml so the pins cannot drift from it (runtime
#    dependencies plus the `wandb` extra). Own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['wandb']))" > requirements.txt \
 && pip install -r requirements.txt \
 && python -c "import torch; assert torch.version.cuda, 'the CUDA build of torch was replaced'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

# 3. The project itself (no dependencies left to resolve: all pinned above).
COPY README.md ./
COPY nisca ./nisca
RUN pip install --no-deps . && pip check


FROM ${PYTHON_IMAGE} AS runtime
# rsync: Ray copies its bootstrap files into the container with `rsync -e 'docker exec'`.
# openssh-client: the head's autoscaler reaches the worker hosts over SSH from inside the container.
# Debian's own versions of the release the base image pins (exact apt pins break on every point release).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*

# Non-root user; uid 1000 like Ray's own images. It owns the virtual environment so that Ray's
# setup_commands can still `pip install` into it (cluster/gcp.yaml installs the GCP client on the head).
RUN groupadd --gid 1000 ray && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash ray
COPY --from=builder --chown=ray:ray /opt/venv /opt/venv

# Ray runs every command through `bash --login`, and Debian's /etc/profile resets PATH for
# non-root users: put the environment back on PATH there too (expanded at login, hence the quotes).
# hadolint ignore=SC2016
RUN echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/nisca-venv.sh

# HOME must be in the image's environment: Ray's docker runner reads it from there to place its
# bootstrap files (~/ray_bootstrap_config.yaml) and falls back to /root otherwise.
ENV HOME=/home/ray \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 1000:1000
WORKDIR /home/ray
CMD ["bash"]
