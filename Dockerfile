# syntax=docker/dockerfile:1
#
# The schemaop binary (CLI and operator), statically linked against musl, on a
# distroless base that holds nothing else: no shell, no package manager.
#
#   docker build -t schemaop:dev .
#   docker run --rm schemaop:dev --help
#
# The same image serves the operator (the default command, `run`) and one-off
# CLI runs (`docker run ... schemaop:dev status`).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# ring, the TLS crypto library, and pg_query, PostgreSQL's SQL scanner,
# compile C: musl-gcc builds them for musl. pg_query's bindgen loads libclang.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools libclang-dev \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
# bindgen's libclang, asked for musl headers, does not find its own builtin
# ones (stdbool.h): point it at them.
ENV BINDGEN_EXTRA_CLANG_ARGS_x86_64_unknown_linux_musl="-I/usr/lib/llvm-14/lib/clang/14.0.6/include"
WORKDIR /src

# Dependencies first, from the manifests alone, with placeholder sources: this
# layer is reused until Cargo.toml or Cargo.lock change, so an edit to the
# code recompiles only schemaop itself. Every workspace member's manifest must
# be present, and each benchmark operator/Cargo.toml declares needs a file: their
# placeholders stay (.dockerignore leaves the real ones out).
COPY Cargo.toml Cargo.lock ./
COPY operator/Cargo.toml operator/
COPY e2e/Cargo.toml e2e/
RUN mkdir -p operator/src operator/benches e2e/src \
    && echo 'fn main() {}' > operator/src/main.rs \
    && touch operator/src/lib.rs e2e/src/lib.rs \
    && for bench in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p;}' operator/Cargo.toml); do \
         echo 'fn main() {}' > "operator/benches/$bench.rs"; \
       done \
    && cargo build --release --locked --target x86_64-unknown-linux-musl -p schemaop \
    && rm -rf operator/src

COPY operator/ operator/
# COPY keeps the files' own times, which may be older than the placeholder
# build: touch them, or cargo finds the crate fresh and ships the placeholder
# (which prints no version, so the last line would fail).
RUN find operator/src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --target x86_64-unknown-linux-musl -p schemaop \
    && cp target/x86_64-unknown-linux-musl/release/schemaop /schemaop \
    && /schemaop --version | grep '^schemaop '

# Static binaries only; "nonroot" runs as 65532:65532, as the Helm chart's
# securityContext expects.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="schemaop" \
      org.opencontainers.image.description="PostgreSQL schema migrations as a CLI and a Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/schemaop/schemaop" \
      org.opencontainers.image.url="https://github.com/schemaop/schemaop"
COPY --from=build /schemaop /usr/local/bin/schemaop
USER 65532:65532
# The operator's /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/schemaop"]
CMD ["run"]
