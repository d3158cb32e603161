# groove-volumed's container image: one server per host that owns
# hugepages (docs/DEPLOY.md). Two stages on Debian 12 (bookworm):
#
#   build    installs the build dependencies with script/bootstrap (the one
#            package list developers and CI use), builds the `release`
#            preset and runs its unit tests: a failing test fails the build;
#   runtime  debian:bookworm-slim with the runtime libraries only, the two
#            binaries and a non-root user.
#
# tests/deploy/ checks this file without Docker: every library `ldd` reports
# for the binaries comes from a package the runtime stage installs (or that
# bookworm-slim has), the COPY --from paths are what the build produces,
# the presets and scripts exist; and it lints it (dockerfile-utils).
#
#   docker build -t groove-volumed \
#     --build-arg GROOVE_REVISION="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 127.0.0.1:50051:50051 -p 127.0.0.1:9464:9464 \
#     --shm-size=2g groove-volumed
#
# Hugepages: mount a hugetlbfs (gid 10002, see below) into the container at
# the data directory, or let the server use memfd_create(MFD_HUGETLB).

FROM debian:bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the
# package list changes, not for every source change.
COPY script/bootstrap script/bootstrap
RUN script/bootstrap --no-npm-tools && rm -rf /var/lib/apt/lists/*
COPY . .
# The git revision the binaries report (--version, /metrics'
# groove_build_info, `groovectl version`): the build context holds no .git
# (.dockerignore), so the build cannot ask git; without this argument they
# report "unknown".
ARG GROOVE_REVISION=""
RUN cmake --preset release -DGROOVE_REVISION="${GROOVE_REVISION}" \
    && cmake --build --preset release -j "$(nproc)" \
    && ctest --preset release -j "$(nproc)"

FROM debian:bookworm-slim AS runtime
# The shared libraries of groove-volumed and groovectl, by Debian package
# (tests/deploy checks this list against `ldd` + `dpkg -S`): gRPC 1.51 and
# its core, protobuf 3.21, Abseil 20220623, prometheus-cpp 1.0 (core, and
# the pull endpoint with its CivetWeb HTTP server), and what gRPC links
# (c-ares, RE2, OpenSSL; the server also checks its TLS PEM files with
# libcrypto). No ca-certificates: the server trusts only the CA files it
# is given (--tls-client-ca), never the system's store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
       libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libcivetweb1 \
       libc-ares2 libre2-9 libssl3 \
    && rm -rf /var/lib/apt/lists/*

# The server runs as `groove` (uid 10001, gid 10001) with the supplementary
# group `hugetlbfs` (gid 10002): mount hostPath/host hugetlbfs filesystems
# with `gid=10002,mode=1770` so the server can create its pools' files
# there (docs/DEPLOY.md). Kubernetes sets the same ids in the pod's
# securityContext (deploy/kubernetes/base/daemonset.yaml).
RUN groupadd --system --gid 10001 groove \
    && groupadd --system --gid 10002 hugetlbfs \
    && useradd --system --uid 10001 --gid groove --groups hugetlbfs \
       --home-dir /var/lib/groove --shell /usr/sbin/nologin groove \
    && install -d -o groove -g groove -m 0750 /var/lib/groove

COPY --from=build /src/build/release/bin/groove-volumed /usr/local/bin/groove-volumed
COPY --from=build /src/build/release/bin/groovectl /usr/local/bin/groovectl

# The uid alone: Docker takes the user's groups from /etc/passwd and
# /etc/group (10001, and hugetlbfs 10002) only when USER names no group;
# `USER 10001:10001` would run the server without the hugetlbfs group.
USER 10001
WORKDIR /var/lib/groove
VOLUME ["/var/lib/groove"]
# gRPC (groove.v1.VolumePoolService, grpc.health.v1.Health, reflection) and
# Prometheus /metrics.
EXPOSE 50051 9464
# The server drains on SIGTERM (docs/SERVER.md §5): give `docker stop` more
# than --shutdown-deadline (30 s), e.g. `docker stop -t 45`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["groovectl", "--addr", "127.0.0.1:50051", "health"]
ENTRYPOINT ["groove-volumed"]
# --insecure: plaintext gRPC on 0.0.0.0 without tokens, on purpose. The
# container's network is the boundary (publish the port on loopback only,
# `-p 127.0.0.1:50051:50051`, or put the container on a private network).
# Elsewhere, replace --insecure by TLS and/or tokens, files mounted
# read-only, the key and the token file owned by uid 10001 with mode 0600
# (or by root, group 10001, mode 0440): the server refuses them when
# others may read them (docs/DEPLOY.md §10):
#   --tls-cert=/etc/groove/tls/tls.crt --tls-key=/etc/groove/tls/tls.key
#   [--tls-client-ca=/etc/groove/tls/ca.crt]
#   --auth-tokens=/etc/groove/tokens/tokens
CMD ["--listen", "0.0.0.0:50051", "--metrics-listen", "0.0.0.0:9464", \
     "--data-dir", "/var/lib/groove", "--insecure"]
