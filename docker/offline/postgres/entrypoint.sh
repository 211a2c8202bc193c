#!/bin/bash
# First start on an empty $PGDATA: initdb, client authentication from POSTGRES_HOST_AUTH_METHOD (else
# scram-sha-256 with POSTGRES_PASSWORD), POSTGRES_DB, /docker-entrypoint-initdb.d in name order; then
# serve on 0.0.0.0:5432.
set -euo pipefail
if [ "${1:0:1}" = "-" ]; then set -- postgres "$@"; fi
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ "$method" != trust ] && [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "set POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD=trust" >&2; exit 1
  fi
  pwfile=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  initdb --username="$user" --auth-local=trust --auth-host="$method" ${POSTGRES_PASSWORD:+--pwfile="$pwfile"} \
    --encoding=UTF8 --locale=C.UTF-8 > /dev/null
  rm -f "$pwfile"
  echo "host all all all $method" >> "$PGDATA/pg_hba.conf"
  pg_ctl -w -o "-c listen_addresses=''" start > /dev/null
  psql=(psql -v ON_ERROR_STOP=1 --username "$user" --no-password --no-psqlrc)
  [ "$db" = postgres ] || "${psql[@]}" -d postgres -c "CREATE DATABASE \"$db\""
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) echo "init: $f"; "${psql[@]}" -d "$db" -f "$f" ;;
      *.sh) echo "init: $f"; . "$f" ;;
    esac
  done
  pg_ctl -w -m fast stop > /dev/null
fi
if [ "$1" = postgres ]; then shift; set -- postgres -c listen_addresses='*' "$@"; fi
exec "$@"
