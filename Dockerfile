# syntax=docker/dockerfile:1
# Latchkey's container image: a Rust builder stage, then a small Debian runtime with only the
# `latchkey` binary (the catalog, the connect page and its SDK are embedded in it).
#
#   docker build -t latchkey .
#   docker run -d --name latchkey -p 7400:7400 -v latchkey-data:/data latchkey
#   docker logs latchkey        # the first start prints the generated API key once
#
# See docs/install.md for the settings a production container should pass.

# The builder and the runtime are the same Debian release, so the binary's glibc matches.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Only what the build reads (see .dockerignore): the workspace, the catalog, the web page and
# the docs that are compiled into the binary.
COPY . .
# The cache mounts keep the crate registry and the target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p latchkey && \
    install -m 0755 target/release/latchkey /usr/local/bin/latchkey

FROM debian:bookworm-slim
# ca-certificates: outbound TLS checks servers against the system's roots.
RUN apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin latchkey && \
    install -d -o latchkey -g latchkey -m 0700 /data
COPY --from=build /usr/local/bin/latchkey /usr/local/bin/latchkey

USER latchkey
WORKDIR /data
# The data directory holds the SQLite database and, unless they are passed in the environment,
# the generated master key and API key: keep it on a volume.
# NO_COLOR: plain text in `docker logs` (LATCHKEY_LOG_JSON=true for JSON lines).
ENV LATCHKEY_DATA_DIR=/data \
    LATCHKEY_LISTEN=0.0.0.0:7400 \
    NO_COLOR=1
VOLUME ["/data"]
EXPOSE 7400
# GET /healthz on the listening port. Bash's /dev/tcp instead of curl: the image needs no HTTP
# client for one request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${LATCHKEY_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
ENTRYPOINT ["latchkey"]
CMD ["serve"]
