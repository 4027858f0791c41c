#!/usr/bin/env bash
# Build dependencies that cargo cannot install: the pg_query crate compiles
# PostgreSQL's own SQL scanner (C, with the C compiler ring already needs)
# and generates its Rust bindings with bindgen, which loads libclang.
#
# Installs libclang-dev from Debian's packages when it is missing; does
# nothing when it is there, or on a machine without apt-get (install
# libclang there yourself, or point LIBCLANG_PATH at it).
set -euo pipefail

if [ -n "${LIBCLANG_PATH:-}" ] || ! command -v apt-get >/dev/null 2>&1; then
  exit 0
fi
# Not a look for libclang*.so: libclang-cpp, which other packages bring, matches
# that too, and bindgen also needs the headers libclang-dev depends on.
if dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'ok installed'; then
  exit 0
fi
echo "[build-deps] installing libclang-dev for pg_query's bindgen" >&2
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
