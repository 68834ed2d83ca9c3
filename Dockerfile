# syntax=docker/dockerfile:1
# One image for every service; compose picks the binary with `command`.

FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys, with an OpenSSL of its own (TLS, SASL
# PLAIN and SCRAM): make, gcc, perl, zlib are all in this image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p command-api -p projector -p query-api -p payment-gateway \
       -p notifier \
 && mkdir -p /out \
 && cp target/release/command-api target/release/projector target/release/query-api \
       target/release/payment-gateway target/release/notifier /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home boxoffice
COPY --from=build /out/ /usr/local/bin/
USER boxoffice
ENV LOG_FORMAT=json RUST_LOG=info
# Migrations are compiled into the binaries (sqlx::migrate!); each applies its own.
CMD ["command-api"]
