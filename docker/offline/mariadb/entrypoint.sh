#!/bin/bash
# First start on an empty /var/lib/mysql: create the system tables, root@'%', MYSQL_DATABASE, then run
# /docker-entrypoint-initdb.d in name order against MYSQL_DATABASE; then serve on 0.0.0.0:3306.
set -euo pipefail
if [ "${1:0:1}" = "-" ]; then set -- mariadbd "$@"; fi
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/init.sock
if [ "$1" = mariadbd ] && [ ! -d "$DATADIR/mysql" ]; then
  if [ -n "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then password=""
  elif [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then password=$MYSQL_ROOT_PASSWORD
  else echo "set MYSQL_ROOT_PASSWORD or MYSQL_ALLOW_EMPTY_PASSWORD=yes" >&2; exit 1; fi
  mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal --skip-test-db \
    --skip-name-resolve > /dev/null
  mariadbd --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
  pid=$!
  for _ in $(seq 1 60); do mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break; sleep 1; done
  sql() { mariadb --socket="$SOCKET" -uroot "$@"; }
  escaped=${password//\'/\'\'}
  sql <<SQL
CREATE USER 'root'@'%' IDENTIFIED BY '${escaped}';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY '${escaped}';
SQL
  export MYSQL_PWD=$password
  if [ -n "${MYSQL_DATABASE:-}" ]; then sql -e "CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE}\`"; fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) echo "init: $f"; sql ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} < "$f" ;;
      *.sql.gz) echo "init: $f"; gunzip -c "$f" | sql ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} ;;
      *.sh) echo "init: $f"; . "$f" ;;
    esac
  done
  unset MYSQL_PWD
  kill "$pid"; wait "$pid" || true
fi
if [ "$1" = mariadbd ]; then shift; set -- mariadbd --datadir="$DATADIR" --bind-address=0.0.0.0 --port=3306 "$@"; fi
exec "$@"
