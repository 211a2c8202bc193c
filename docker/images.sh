#!/usr/bin/env bash
# Build the offline image set (no container registry needed: Debian's mirror, PyPI and npm only) and
# write the image variables docker-compose.yml reads to build/images.env:
#   make images && docker compose --env-file build/images.env up -d --wait
# Each image is tagged with a hash of its inputs (Dockerfile, files it copies, base image, args): an
# image whose tag exists is not built again. Extra CA certificates for pip/npm inside builds (a
# TLS-intercepting proxy, a corporate CA) come from RECSYS_BUILD_CA_BUNDLE (a PEM file), handed to
# BuildKit as a secret: used by the RUN steps that download, never stored in a layer.
set -euo pipefail
shopt -s inherit_errexit  # a failing build inside $(...) stops the script
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OFFLINE=$HERE/offline
ENV_FILE=${RECSYS_IMAGES_ENV:-$ROOT/build/images.env}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${RECSYS_BUILD_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
# BuildKit (secrets, cache mounts) through the engine's own client: the docker CLI on PATH may lack buildx
BUILD_CLIENT=${RECSYS_BUILD_CLIENT:-$(for c in /usr/bin/docker "$(command -v docker)"; do
  DOCKER_BUILDKIT=1 "$c" build --help 2>/dev/null | grep -q -- '--secret' && { echo "$c"; break; }; done)}
[ -n "$BUILD_CLIENT" ] || { echo "images.sh: no docker client with BuildKit (--secret) found" >&2; exit 1; }

log() { echo "images: $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }
# hash of file contents and literal strings, in the order given
input_hash() {
  local part
  for part in "$@"; do
    if [ -d "$part" ]; then (cd "$part" && find . -type f -not -name '*.pyc' -not -path '*/__pycache__/*' \
      -not -path '*/node_modules/*' -print0 | sort -z | xargs -0 sha256sum)
    elif [ -f "$part" ]; then sha256sum < "$part"
    else echo "$part"; fi
  done | sha256sum | cut -c1-12
}

# debootstrap mounts /proc etc. inside the tree while it runs: never remove across a mount
unmount_and_remove() {
  local m
  for m in proc sys dev/pts dev; do mountpoint -q "$1/$m" && umount -l "$1/$m"; done
  rm -rf --one-file-system "$1" "$1.log"
}

# A Debian root file system from the mirror (debootstrap, minbase) imported as a base image.
debian_base() {
  local suite=$1 tag
  tag="recsys-offline/debian:$suite-$(input_hash "$suite" "$MIRROR" "$OFFLINE/debian-base.txt")"
  if ! exists "$tag"; then
    local rootfs started=$SECONDS
    rootfs=$(mktemp -d /var/tmp/recsys-debootstrap.XXXXXX)
    log "debootstrap $suite -> $tag"
    if ! debootstrap --variant=minbase --include="$(paste -sd, "$OFFLINE/debian-base.txt")" "$suite" "$rootfs" \
        "$MIRROR" > "$rootfs.log" 2>&1; then
      tail -n 20 "$rootfs.log" >&2; unmount_and_remove "$rootfs"; exit 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs.log"
    # images keep no apt cache; installs in Dockerfiles run apt-get update first
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90recsys"
    tar -C "$rootfs" --numeric-owner -c . \
      | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
    unmount_and_remove "$rootfs"
    log "$tag built in $((SECONDS - started)) s"
  fi
  echo "$tag"
}

# build <name> <context> <dockerfile> [--build-arg K=V ...]: tag recsys-offline/<name>:<hash of inputs>
# (the Dockerfile, the build args and the context, or the files in $INPUTS when the context is wider)
build() {
  local name=$1 context=$2 dockerfile=$3; shift 3
  local tag started=$SECONDS
  tag="recsys-offline/$name:$(input_hash "$dockerfile" "$@" ${INPUTS:-"$context"})"
  if ! exists "$tag"; then
    log "building $tag"
    local secret=()
    [ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
    local out
    out=$(mktemp)
    if ! DOCKER_BUILDKIT=1 "$BUILD_CLIENT" build --progress=plain -t "$tag" -f "$dockerfile" "${secret[@]}" "$@" \
        "$context" > "$out" 2>&1; then
      tail -n 40 "$out" >&2; rm -f "$out"; log "$tag: build failed"; exit 1
    fi
    rm -f "$out"
    log "$tag built in $((SECONDS - started)) s"
  fi
  echo "$tag"
}

started=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Two independent chains at once: the Python 3.13 compile (CPU) overlaps the downloads of the other chain
(
  trixie=$(debian_base trixie)
  mysql=$(build mariadb "$OFFLINE/mariadb" "$OFFLINE/mariadb/Dockerfile" --build-arg "BASE_IMAGE=$trixie")
  postgres=$(build postgres "$OFFLINE/postgres" "$OFFLINE/postgres/Dockerfile" --build-arg "BASE_IMAGE=$trixie")
  localstack=$(INPUTS="$ROOT/localstack/host" build localstack "$ROOT/localstack" "$OFFLINE/localstack/Dockerfile" \
    --build-arg "BASE_IMAGE=$trixie")
  printf 'mysql=%s\npostgres=%s\nlocalstack=%s\n' "$mysql" "$postgres" "$localstack" > "$work/trixie"
) &
trixie_chain=$!
(
  bookworm=$(debian_base bookworm)
  lambda_python=$(build lambda-python "$OFFLINE/lambda-python" "$OFFLINE/lambda-python/Dockerfile" \
    --build-arg "BASE_IMAGE=$bookworm")
  python=$(build python "$OFFLINE/python" "$OFFLINE/python/Dockerfile" --build-arg "BASE_IMAGE=$bookworm")
  project=$(INPUTS="$ROOT/Dockerfile $ROOT/.dockerignore $ROOT/pyproject.toml $ROOT/requirements $ROOT/build/rds-ca-bundle.pem $ROOT/README.md $ROOT/src $ROOT/seed \
    $ROOT/lambda $ROOT/sql $ROOT/glue" build recsys "$ROOT" "$ROOT/Dockerfile" \
    --build-arg "BASE_IMAGE=$python" --build-arg "LAMBDA_PYTHON_IMAGE=$lambda_python")
  moto=$(build moto "$OFFLINE/moto" "$OFFLINE/moto/Dockerfile" --build-arg "BASE_IMAGE=$project")
  printf 'project=%s\nmoto=%s\n' "$project" "$moto" > "$work/bookworm"
) &
bookworm_chain=$!
failed=0
wait "$trixie_chain" || failed=1
wait "$bookworm_chain" || failed=1
[ "$failed" = 0 ] || { log "an image failed to build (above)"; exit 1; }
# shellcheck disable=SC1091
. "$work/trixie"
# shellcheck disable=SC1091
. "$work/bookworm"

mkdir -p "$(dirname "$ENV_FILE")"
cat > "$ENV_FILE.tmp" <<ENV
# written by docker/images.sh: the offline image set (docker compose --env-file $(basename "$ENV_FILE") ...)
MYSQL_IMAGE=$mysql
POSTGRES_IMAGE=$postgres
LOCALSTACK_IMAGE=$localstack
MOTO_IMAGE=$moto
RECSYS_IMAGE=$project
# no Lambda service can run the function here: the firehose service runs the zip under awslambdaric
RECSYS_LAMBDA_INVOKE=runtime
LOCALSTACK_LAMBDA_ZIP=none
ENV
mv "$ENV_FILE.tmp" "$ENV_FILE"
log "images ready in $((SECONDS - started)) s; variables in $ENV_FILE"
