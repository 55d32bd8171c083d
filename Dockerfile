# syntax=docker/dockerfile:1
# Images of the stylegate deployment (k8s/):
#   docker build -t stylegate/gateway:0.1.0 .                                       (gateway, default)
#   docker build --target model-repository -t stylegate/model-repository:0.1.0 .   (run `make export` first)
#   docker build --target tensorrt-builder -t stylegate/tensorrt-builder:0.1.0 .   (GPU overlay's Job)
# Base images are pinned by tag; the TensorRT builder's NGC release must match the
# tritonserver image's (k8s/base/triton.yaml): a plan only loads in the TensorRT that built it.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: a virtualenv with the serving dependencies only (no torch) -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/stylegate
WORKDIR /src
COPY pyproject.toml ./
COPY cli/ cli/
COPY protos/ protos/
COPY service/ service/
COPY export/ export/
COPY gan/ gan/
COPY ops/ ops/
# No extras: `pip install .` installs what serving needs and nothing of training/export
# (their sources come along, inert without torch; `stylegate export` says what is missing).
RUN /opt/stylegate/bin/pip install . \
    && ! /opt/stylegate/bin/python -c "import torch" 2>/dev/null \
    && /opt/stylegate/bin/python -c "import stylegate.service.server, stylegate.cli.main"

# --- model-repository: the exported repository, copied into pods by init containers -------
FROM busybox:1.37.0 AS model-repository
COPY model_repository/ /model-repository/
USER 10001:10001

# --- tensorrt-builder: NVIDIA's TensorRT container + stylegate, for `export --tensorrt` -----
FROM nvcr.io/nvidia/tensorrt:24.10-py3 AS tensorrt-builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY cli/ cli/
COPY protos/ protos/
COPY service/ service/
COPY export/ export/
COPY gan/ gan/
COPY ops/ ops/
# `stylegate export` imports the torch exporter modules (export/cli.py -> export/blend.py),
# so torch comes along; the plans themselves are built by TensorRT from the ONNX files.
RUN pip install torch==2.13.0 && pip install . onnx
WORKDIR /models
USER 1000:1000
ENTRYPOINT ["stylegate"]
CMD ["export", "--tensorrt", "--help"]

# --- gateway (default target): slim, non-root, `stylegate serve` ---------------------------
FROM ${PYTHON_IMAGE} AS gateway
ENV PATH=/opt/stylegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STYLEGATE_HOST=0.0.0.0
RUN groupadd --system --gid 10001 stylegate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin stylegate
COPY --from=build /opt/stylegate /opt/stylegate
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051 9090
ENTRYPOINT ["stylegate"]
CMD ["serve"]
