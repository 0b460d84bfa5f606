#!/usr/bin/env bash
# A local stand-in for python:3.11-slim, for machines that reach no container registry: Debian
# bookworm (its python3 is 3.11, as the constraints expect) bootstrapped with
# `debootstrap --variant=minbase` from the Debian mirror this machine's apt already uses, with
# python3, its venv module and Debian's CA certificates, then `docker import`ed. Nothing is pulled.
#
#   scripts/build_base_image.sh [TAG]        (default edgeqat-base:bookworm)
#
# The mirror comes from /etc/apt/sources.list(.d) (scripts/debian_mirror.py), or from
# $EDGEQAT_DEBIAN_MIRROR. Needs root (debootstrap, chroot), debootstrap and a running Docker
# engine. Idempotent: an existing TAG is kept (EDGEQAT_REBUILD_BASE=1 rebuilds it).
# This machine's own CA bundle is NOT put in the base: `make image` hands it to the build as a
# secret, used by pip and never stored in a layer.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${1:-edgeqat-base:bookworm}"
SUITE=bookworm
DOCKER="${DOCKER:-docker}"

say() { echo "[base] $*"; }
die() { echo "[base] ERROR: $*" >&2; exit 1; }

if [ -z "${EDGEQAT_REBUILD_BASE:-}" ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  say "$TAG already built (EDGEQAT_REBUILD_BASE=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run as root or build with a registry-reachable base: make image BASE_IMAGE=python:3.11-slim"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed): start dockerd first"
if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || die "apt-get install debootstrap failed"
fi

MIRROR="${EDGEQAT_DEBIAN_MIRROR:-$(python3 "$REPO/scripts/debian_mirror.py" --suite "$SUITE")}" \
  || die "no Debian mirror for $SUITE in this machine's apt sources; set EDGEQAT_DEBIAN_MIRROR"
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/edgeqat-base.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

start=$(date +%s)
say "debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# What an image needs none of: downloaded .debs, package lists, documentation. The apt
# sources stay (apt-get in a derived image reads them), as in Debian's own images.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
  "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old
: >"$ROOTFS/etc/resolv.conf"   # Docker writes its own; the host's must not be baked in
: >"$ROOTFS/etc/hostname"

say "docker import -> $TAG"
tar -C "$ROOTFS" --numeric-owner -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap --variant=minbase $SUITE + python3, python3-venv, ca-certificates" \
  - "$TAG" >/dev/null

version="$("$DOCKER" run --rm --network none "$TAG" python3 -c 'import ssl, sys, venv; print(sys.version.split()[0])')" \
  || die "$TAG was imported but python3 does not start in it"
size="$("$DOCKER" image inspect -f '{{.Size}}' "$TAG")"
say "ok: $TAG, Python $version, $((size / 1000000)) MB, in $(( $(date +%s) - start )) s"
