# syntax=docker/dockerfile:1
#
# custos container image: build with the Rust toolchain, run on Debian slim.
#
#   docker build -t custos .
#   docker run --rm custos demo
#   docker run --rm --read-only -v "$PWD/custos.toml:/etc/custos/custos.toml:ro" \
#       -v "$PWD/policy.yaml:/etc/custos/policy.yaml:ro" -e CUSTOS_AUDIT_KEY=… custos
#
# The build stage installs exactly the system packages that .ci/run installs
# (librdkafka is built from source by the rdkafka crate, with OpenSSL);
# tests/deploy/check_deploy.py checks that the two lists stay the same.
# docs/deployment.md describes the image.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential pkg-config libssl-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY schemas ./schemas
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin custos \
    && install -D -m 0755 target/release/custos /out/custos

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
# Pass the repository's address and commit at build time:
#   --build-arg VCS_URL=… --build-arg VCS_REF="$(git rev-parse HEAD)"
ARG VCS_URL=""
ARG VCS_REF=""
LABEL org.opencontainers.image.title="custos" \
      org.opencontainers.image.description="Streaming data-governance worker for Kafka: per-purpose fan-out, consent, erasure, retention, audit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${VCS_URL}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
# Runtime libraries of the binary: OpenSSL 3 (librdkafka's TLS), CA roots;
# glibc and zlib are in the base image. Nothing else: no shell tools are
# needed except bash, which the compose healthcheck uses (/dev/tcp).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 custos \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin custos \
    && mkdir -p /etc/custos
COPY --from=build /out/custos /usr/local/bin/custos
COPY examples/shop/policy.yaml /usr/share/custos/examples/shop/policy.yaml
# custos writes nothing to disk: the root filesystem can be read-only.
WORKDIR /etc/custos
USER 10001:10001
# /metrics, /healthz, /readyz ([http] listen, default 0.0.0.0:9464)
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["custos"]
CMD ["run", "--config", "/etc/custos/custos.toml"]
