#!/usr/bin/env bash
# PostgreSQL for the test and demo scripts, which source this file.
#
# ensure_test_server works on a fresh Debian machine (installs the server
# from Debian's packages), on one where PostgreSQL is installed but stopped
# (starts it), and on one where it already runs (leaves it alone), then
# exports SCHEMAOP_TEST_ADMIN_URL for a role that can create databases. Set
# SCHEMAOP_TEST_ADMIN_URL beforehand to use a server of your own instead.
#
# Run directly, it does that and prints the URL.
set -euo pipefail

schemaop_pg_log() { echo "[postgres] $*" >&2; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  elif [ "$(id -un)" = postgres ]; then
    "$@"
  else
    sudo -u postgres -- "$@"
  fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_postgres_installed() {
  if command -v pg_lsclusters >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    return
  fi
  schemaop_pg_log "PostgreSQL is not installed; installing it from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
}

ensure_postgres_running() {
  local version cluster status
  if ! pg_lsclusters -h | grep -q .; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    schemaop_pg_log "no cluster found; creating $version/main"
    as_root pg_createcluster "$version" main >/dev/null
  fi
  # The first cluster listening on 5432, or else the first one.
  read -r version cluster _ status _ < <(pg_lsclusters -h | awk '$3 == 5432' | head -n 1; pg_lsclusters -h | head -n 1)
  if [ "$status" != online ]; then
    schemaop_pg_log "starting cluster $version/$cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start
  fi
  for _ in $(seq 1 30); do
    if as_postgres psql -qAtX -c 'SELECT 1' >/dev/null 2>&1; then
      return
    fi
    sleep 1
  done
  schemaop_pg_log "PostgreSQL did not accept connections within 30s; see /var/log/postgresql/"
  return 1
}

# A password role works under Debian's default pg_hba (scram on 127.0.0.1)
# and under trust alike.
ensure_test_role() {
  as_postgres psql -qAtX -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'schemaop_test') THEN
    CREATE ROLE schemaop_test LOGIN CREATEDB CREATEROLE PASSWORD 'schemaop_test';
  END IF;
END
$$;
SQL
}

ensure_test_server() {
  if [ -n "${SCHEMAOP_TEST_ADMIN_URL:-}" ]; then
    return
  fi
  ensure_postgres_installed
  ensure_postgres_running
  ensure_test_role
  local port
  port=$(pg_lsclusters -h | awk '$4 == "online" {print $3; exit}')
  export SCHEMAOP_TEST_ADMIN_URL="postgres://schemaop_test:schemaop_test@127.0.0.1:${port:-5432}/postgres"
}

# The newest installed server's binaries (initdb, pg_ctl).
postgres_bin() {
  ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_test_server
  echo "$SCHEMAOP_TEST_ADMIN_URL"
fi
