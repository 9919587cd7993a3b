# etcdbrctl as a container image, usable in place of gardener's etcd-backup-restore image
# (etcd-druid's spec.backup.image): entrypoint /etcdbrctl, user 65532, HOME /home/nonroot (the
# Local provider's directory below $HOME, where druid mounts a Local bucket).
#
#   docker build -t etcdbr:dev --build-arg GIT_SHA=$(git rev-parse --short HEAD) .

# Builder: the Rust toolchain, protoc and protobuf's well-known types (etcd's gRPC API is
# compiled from its .proto files).
FROM docker.io/library/rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG GIT_SHA=unknown
ENV ETCDBR_GIT_SHA=${GIT_SHA} \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p etcdbrctl \
 && install -m 0755 target/release/etcdbrctl /etcdbrctl

# Runtime: glibc and CA certificates, no shell, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /etcdbrctl /etcdbrctl
USER 65532:65532
WORKDIR /home/nonroot
ENTRYPOINT ["/etcdbrctl"]
