# syntax=docker/dockerfile:1.7
# The UniRepLKNet service image: one image for `unirep serve` (default), and the gateway/worker roles of the
# compose stack. Two stages: a builder that fills a virtual environment, and a slim CUDA *runtime* image (no
# compilers, no headers) that receives only that environment and the source.
#
#   docker build -t unirep-service .                     # CUDA 12 runtime, Python 3.11
#   docker run --gpus all -p 8000:8000 unirep-service    # serves on $UNIREP_PORT (8000)
#   docker build --build-arg PORT=9000 -t unirep-service .
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

# --- builder: Python packages into /opt/venv ------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Apt packages are not pinned on purpose: the CUDA base tag pins the Ubuntu release, and within it the newest
# package (security fixes) is the one to take; pinned versions vanish from the mirrors and break the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from the project metadata alone: this layer (torch and friends, several GB) is rebuilt only
# when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
COPY sdk/pyproject.toml sdk/pyproject.toml
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('/tmp/requirements.txt', 'w').write('\n'.join(d for d in deps if not d.startswith('unirep-client')))" \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('sdk/pyproject.toml', 'rb'))['project']['dependencies']))" \
      >> /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt --no-cache-dir \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['gpu']))" \
      > /tmp/requirements-gpu.txt \
 && pip install -r /tmp/requirements-gpu.txt --no-cache-dir

# Then the source: the SDK (the CLI's classify/embed use it) and the service, without touching dependencies.
COPY sdk/ sdk/
COPY unirep_errors/ unirep_errors/
COPY models/ models/
COPY modality_adapters/ modality_adapters/
COPY servable/ servable/
COPY service/ service/
COPY training/ training/
COPY README.md ./
RUN pip install --no-cache-dir --no-deps ./sdk . && python -c "import service.cli, unirep_client"

# --- runtime ------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG PORT=8000
ENV DEBIAN_FRONTEND=noninteractive
# Shared libraries the decoders load at run time: ffmpeg (video, audio fallbacks), libsndfile (audio),
# libgl1/libgomp1/libusb (open3d for point clouds). Not pinned, for the reason given in the builder stage.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 ffmpeg libsndfile1 libgl1 libgomp1 libusb-1.0-0 \
      ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 unirep \
 && useradd --system --uid 10001 --gid unirep --create-home --home-dir /home/unirep unirep \
 && mkdir -p /data/hf && chown unirep:unirep /data/hf
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/data/hf \
    UNIREP_HOST=0.0.0.0 \
    UNIREP_PORT=${PORT}
WORKDIR /home/unirep
USER 10001:10001
EXPOSE ${PORT}
VOLUME ["/data/hf"]

# Liveness of the HTTP process (not readiness: a worker may still warm up). Python, because the image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('UNIREP_PORT', '8000') + '/healthz', timeout=4)"]

# tini forwards SIGTERM to the service so that its graceful drain runs, and reaps decoder processes.
ENTRYPOINT ["tini", "--"]
CMD ["unirep", "serve"]
