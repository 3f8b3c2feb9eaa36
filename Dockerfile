# voxlane server image.
#   CPU (default):  docker build -t voxlane .
#   GPU (CUDA 12):  docker build --build-arg VARIANT=gpu -t voxlane:gpu .
#                   docker run --gpus all -p 8000:8000 -v voxlane-data:/data voxlane:gpu
#   A worker node:  docker run -v worker-data:/data -e VOXLANE_DATABASE_URL=... voxlane worker
FROM python:3.11-slim

ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

WORKDIR /app
# torch runs the speaker encoder (diarization); the silero-vad package depends on it too. Take the small CPU
# build, and pin it so nothing later swaps in a CUDA build. webrtcvad (a dependency of the package that ships
# the speaker encoder's weights) builds from source: it needs a C compiler.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu && echo "torch==2.13.0" > /tmp/pin
COPY pyproject.toml README.md ./
COPY server ./server
COPY media ./media
COPY asr ./asr
COPY protocol ./protocol
COPY web_client ./web_client
# the riva extra: VOXLANE_ASR_BACKEND=riva needs no other image
RUN pip install -c /tmp/pin ".[riva]" \
 && if [ "$VARIANT" = "gpu" ]; then pip install "nvidia-cublas-cu12" "nvidia-cudnn-cu12==9.*"; fi

# CTranslate2 finds cuBLAS/cuDNN from the pip wheels through this path in the GPU variant.
ENV LD_LIBRARY_PATH=/usr/local/lib/python3.11/site-packages/nvidia/cublas/lib:/usr/local/lib/python3.11/site-packages/nvidia/cudnn/lib
ENV VOXLANE_HOST=0.0.0.0 VOXLANE_PORT=8000 VOXLANE_DATA_DIR=/data
RUN if [ "$VARIANT" = "gpu" ]; then echo "VOXLANE_DEVICE=cuda VOXLANE_COMPUTE_TYPE=float16" > /app/.gpu; fi
# The server runs unprivileged: it owns only its data volume (the code and packages stay root's, read-only to it).
# The directory is created and chowned before VOLUME, so a fresh named volume starts out owned by the user too.
RUN groupadd --system --gid 10001 voxlane \
 && useradd --system --uid 10001 --gid voxlane --home-dir /data --no-create-home --shell /usr/sbin/nologin voxlane \
 && mkdir -p /data && chown voxlane:voxlane /data
USER voxlane
# caches (Hugging Face, torch) go under the writable home
ENV HOME=/data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
# One image, both roles: `serve` (the default: API and live streams, and jobs unless VOXLANE_JOBS=off) or `worker`
# (jobs only; /health and /metrics on the same port).
ENTRYPOINT ["sh", "-c", "if [ -f /app/.gpu ]; then export $(cat /app/.gpu); fi; exec voxlane \"$@\"", "voxlane"]
CMD ["serve"]
