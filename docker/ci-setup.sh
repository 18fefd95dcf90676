#!/usr/bin/env bash
# A Docker engine and a Debian base image on a machine that reaches only the Debian archive and
# PyPI (no container registry): installs docker.io and debootstrap if missing, starts dockerd if
# it is not running, and makes `debian:bookworm-slim` with debootstrap + `docker import` if the
# engine lacks it. Idempotent: a machine that already has all three pays nothing.
# Needs root. Exit 0 and prints "docker ready"; exit 3 (with the reason) where it cannot.
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "docker/ci-setup.sh: needs root to install docker.io and debootstrap" >&2; exit 3; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null \
    || { echo "docker/ci-setup.sh: apt-get could not install docker.io debootstrap" >&2; exit 3; }
fi
DOCKER=$(command -v docker)
if ! "$DOCKER" info >/dev/null 2>&1; then
  # overlay2 where the kernel allows it, vfs (slower, always works) otherwise
  for driver in overlay2 vfs; do
    nohup dockerd --storage-driver="$driver" >"/tmp/dockerd-$driver.log" 2>&1 &
    for _ in $(seq 30); do "$DOCKER" info >/dev/null 2>&1 && break 2; sleep 1; done
    kill %% 2>/dev/null || true; sleep 2
  done
  "$DOCKER" info >/dev/null 2>&1 || { echo "docker/ci-setup.sh: dockerd does not start here (see /tmp/dockerd-*.log)" >&2; exit 3; }
fi
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  root=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/tmp/debootstrap.log 2>&1 \
    || { echo "docker/ci-setup.sh: debootstrap failed (see /tmp/debootstrap.log)" >&2; exit 3; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$DOCKER" import - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
fi
echo "docker ready ($("$DOCKER" version --format '{{.Server.Version}}'), base $BASE_IMAGE)"
