# The vfl party node image, used by charts/vfl-party (node Deployment and training Jobs).
#   docker build -t registry.example.com/vfl:0.1.0 .
#   docker build --build-arg VFL_EXTRAS=kube,fast,ray -t registry.example.com/vfl:0.1.0-ray .   (with ray.enabled)
# Paths, user and entrypoint match the chart: config /etc/vfl/config/node.yaml, key pair /etc/vfl/tls,
# trusted CAs /etc/vfl/ca, data and jobs on the volume at /var/lib/vfl, uid/gid 10001, read-only root filesystem,
# working directory /tmp (the chart's writable emptyDir, mounted in node and Job pods alike; the chart sets workingDir).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/vfl
ENV PATH=/opt/vfl/bin:$PATH
# CPU-only torch first: an open version range would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY . /src
# kube,fast,ray for an image that also runs the party's RayCluster (charts/vfl-party ray.enabled; docs/deploy.md
# "Ray"); fast: Paillier decryption on AVX-512 IFMA where the CPU has it (vfl/he/ifma.py)
ARG VFL_EXTRAS=kube,fast
RUN pip install "/src[${VFL_EXTRAS}]" && python -m compileall -q /opt/vfl

FROM python:3.11-slim-bookworm
RUN groupadd --gid 10001 vfl \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin vfl \
 && mkdir -p /etc/vfl/config /etc/vfl/tls /etc/vfl/ca /etc/vfl/job /var/lib/vfl/data /var/lib/vfl/jobs \
 && chown -R 10001:10001 /var/lib/vfl
COPY --from=build /opt/vfl /opt/vfl
ENV PATH=/opt/vfl/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# 50051: gRPC with mutual TLS (the Service); 50052: plaintext grpc.health.v1 only (kubelet probes)
EXPOSE 50051 50052
ENTRYPOINT ["vfl"]
CMD ["serve", "--config", "/etc/vfl/config/node.yaml"]
