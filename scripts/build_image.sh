#!/usr/bin/env bash
# `make image`: build the component image (Dockerfile) and record its tag for
# `edgeqat pipeline compile/submit/schedule` and `edgeqat pipeline run --local --docker`.
#
#   IMAGE       tag to build (default edgeqat:<version in pyproject.toml>)
#   BASE_IMAGE  base to build on. Unset: python:3.11-slim when it is present or can be pulled,
#               else a Debian base built from this machine's apt mirror (scripts/build_base_image.sh)
#   CA_BUNDLE   CA file pip in the build trusts, handed over as a BuildKit secret (never stored in
#               a layer). Default: $PIP_CERT, $SSL_CERT_FILE or /etc/ssl/certs/ca-certificates.crt
#   DOCKER      the docker client (default: one that can run BuildKit, see below)
#
# The tag built is written to .cache/edgeqat-image; the build's time and size are printed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
say() { echo "[image] $*"; }
die() { echo "[image] ERROR: $*" >&2; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)"
[ -n "$VERSION" ] || die "no version = \"...\" line in pyproject.toml"
IMAGE="${IMAGE:-edgeqat:$VERSION}"
RECORD="$REPO/.cache/edgeqat-image"

# The CA secret needs BuildKit. Docker >= 23 clients run it only through the buildx plugin;
# older clients (Debian's docker.io 20.10) run the engine's built-in BuildKit with
# DOCKER_BUILDKIT=1. Take the first client on PATH that can do either.
pick_client() {
  local c major
  for c in ${DOCKER:-} $(type -ap docker); do
    if "$c" buildx version >/dev/null 2>&1; then echo "buildx $c"; return; fi
    major="$("$c" version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" || continue
    if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then echo "builtin $c"; return; fi
  done
  return 1
}
read -r MODE DOCKER < <(pick_client) \
  || die "no docker client here can build with BuildKit: install the buildx plugin, or Debian's docker.io"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers ($DOCKER info failed): start dockerd"

if [ -z "${BASE_IMAGE:-}" ]; then
  if "$DOCKER" image inspect python:3.11-slim >/dev/null 2>&1 \
      || timeout 300 "$DOCKER" pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE_IMAGE=python:3.11-slim
  else
    say "python:3.11-slim cannot be pulled here: building the base from this machine's Debian mirror"
    BASE_IMAGE=edgeqat-base:bookworm
    DOCKER="$DOCKER" "$REPO/scripts/build_base_image.sh" "$BASE_IMAGE"
  fi
fi

SECRET=()
CA="${CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}"
if [ -s "$CA" ]; then
  SECRET=(--secret "id=ca_bundle,src=$CA")
  say "pip trusts $CA (build secret)"
fi

say "building $IMAGE on $BASE_IMAGE ($MODE BuildKit, $DOCKER)"
previous="$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
start=$(date +%s)
# host network: the build reaches the package index as this machine does (its proxy, its DNS)
if [ "$MODE" = buildx ]; then
  "$DOCKER" buildx build --load --network host "${SECRET[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" .
else
  DOCKER_BUILDKIT=1 "$DOCKER" build --network host "${SECRET[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" .
fi
seconds=$(( $(date +%s) - start ))

# The proof the tasks look for: the image's own Python.
"$DOCKER" run --rm --network none "$IMAGE" python3 -c \
  'import sys, edgeqat.components.generated; assert sys.prefix == "/opt/venv", sys.prefix' \
  || die "$IMAGE was built but the edgeqat components do not import in it"
# A rebuild leaves the image the tag named before untagged: ~3 GB each time, unless removed.
current="$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  "$DOCKER" image rm "$previous" >/dev/null 2>&1 && say "removed the previous $IMAGE ($previous)" || true
fi
mkdir -p "$(dirname "$RECORD")"
echo "$IMAGE" >"$RECORD.tmp" && mv "$RECORD.tmp" "$RECORD"
size="$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")"
say "built $IMAGE in ${seconds} s: $((size / 1000000)) MB (recorded in ${RECORD#"$REPO"/})"
