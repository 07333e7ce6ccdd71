# npvdb-server in a container: built on Debian 12, run on debian:12-slim with
# only the shared libraries the server links (gRPC core, protobuf-c, OpenBLAS,
# HDF5), as a non-root user, data in the volume /data.
#
#   docker build -t npvdb:0.1.0 .
#   echo "$(openssl rand -hex 24) write" > tokens && chmod 644 tokens
#   docker run --rm -p 50051:50051 -v npvdb-data:/data \
#     -v "$PWD/tokens:/etc/npvdb/tokens:ro" -e NPVDB_TOKEN_FILE=/etc/npvdb/tokens \
#     npvdb:0.1.0 --threads=4
#
# Arguments after the image name replace the default CMD (see
# `npvdb-server --help`); keep --listen=0.0.0.0:50051 and --data-dir=/data.
# On 0.0.0.0 the server refuses to start without a token file
# (NPVDB_TOKEN_FILE or --token-file) or --tls-client-ca (README, Security).
# The server handles SIGTERM itself (sigwait, also as PID 1): it lets calls in
# flight finish for --grace-ms, syncs its write-ahead log and exits 0, so give
# `docker stop -t` more than that (default 10 s = the server's default grace).

# The two base images. Defaults are Docker Hub's; scripts/build-image.sh
# passes a Debian 12 made with debootstrap from Debian's own mirror instead
# (for machines that reach Debian's archive but no image registry).
ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# ---- build ----------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
# The server's subset of scripts/install-deps.sh: compiler, CMake, the four
# libraries and the protobuf-c generator. libcmocka-dev because the test
# folders link it at configure time; Python, Go and the clients are skipped.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libopenblas-dev libhdf5-dev libcmocka-dev \
      libgrpc-dev protobuf-compiler grpc-proto \
      libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target npvdb-server npvdb \
 && strip /build/server/npvdb-server /build/client-c/npvdb

# ---- runtime --------------------------------------------------------------
FROM ${DEBIAN_SLIM_IMAGE}
# The packages of the server's DT_NEEDED libraries (checked by
# tests/helm/test_chart.py against `objdump -p` + `dpkg -S`): libgrpc29 has
# libgrpc and libgpr, libopenblas0-pthread registers libopenblas.so.0,
# libhdf5-103-1 has libhdf5_serial. Their own dependencies come with them.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libopenblas0-pthread libhdf5-103-1 libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 npvdb \
 && useradd --uid 10001 --gid npvdb --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin npvdb \
 && mkdir -p /data \
 && chown npvdb:npvdb /data
COPY --from=build /build/server/npvdb-server /usr/local/bin/npvdb-server
# The CLI, for `helm test` (npvdb health) and for a shell in the pod.
COPY --from=build /build/client-c/npvdb /usr/local/bin/npvdb
# Numeric, so that Kubernetes' runAsNonRoot can verify it (the chart uses 10001).
USER 10001:10001
WORKDIR /data
EXPOSE 50051
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/npvdb-server"]
CMD ["--listen=0.0.0.0:50051", "--data-dir=/data"]
