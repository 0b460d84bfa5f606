#!/usr/bin/env bash
# Sets up an emulated aarch64 (Raspberry Pi class) Python with the aarch64 build of LiteRT,
# for edgeqat.devices.qemu: qemu-aarch64-static on the host, Debian bookworm's arm64
# python3.11 unpacked (dpkg -x, no chroot or binfmt) into $EDGEQAT_ARM64_ROOT/root, and the
# aarch64 wheels of ai-edge-litert and numpy (versions from constraints.txt) in .../site.
#
# Idempotent and cached: a stamp file records what was installed; a second run is instant.
# Root dir: $EDGEQAT_ARM64_ROOT (default <repo>/.cache/arm64). Pip: $EDGEQAT_PIP, else
# <repo>/.venv/bin/pip, else `python3 -m pip`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${EDGEQAT_ARM64_ROOT:-$REPO/.cache/arm64}"
ROOT="$DEST/root"
SITE="$DEST/site"
DEBS="$DEST/debs"
APTDIR="$DEST/apt"
STAMP="$DEST/.stamp"

say() { echo "[arm64] $*"; }
die() { echo "[arm64] ERROR: $*" >&2; exit 1; }

# The smallest set of bookworm arm64 packages under which `import numpy,
# ai_edge_litert.interpreter` works and an Interpreter runs (found by elimination; no apt
# dependency closure: that drags in perl, debconf, tzdata... none of which python loads).
# python3.11 itself links libz and libexpat; ctypes (imported by LiteRT) needs libffi.
PKGS=(
  libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8
  python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
)

pin() {  # version of a package pinned in constraints.txt
  local v
  v="$(grep -i "^$1==" "$REPO/constraints.txt" | head -1 | cut -d= -f3)"
  [ -n "$v" ] || die "$1 is not pinned in $REPO/constraints.txt"
  echo "$v"
}
LITERT_VERSION="$(pin ai-edge-litert)"
NUMPY_VERSION="$(pin numpy)"
WANT="v3 pkgs=${PKGS[*]} ai-edge-litert==$LITERT_VERSION numpy==$NUMPY_VERSION"

# 1. QEMU user-mode emulator (static, so it needs nothing from the arm64 root)
if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    die "qemu-aarch64-static is missing; install it as root: sudo apt-get install -y qemu-user-static"
  fi
  say "installing qemu-user-static (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null 2>&1; then
    say "apt-get update (the package index had no qemu-user-static)"
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null \
      || die "apt-get install qemu-user-static failed"
  fi
  command -v qemu-aarch64-static >/dev/null 2>&1 || die "qemu-user-static installed but qemu-aarch64-static is not on PATH"
fi
say "qemu: $(command -v qemu-aarch64-static)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$ROOT/usr/bin/python3.11" ] && [ -d "$SITE/ai_edge_litert" ]; then
  say "up to date: $DEST"
  exit 0
fi
rm -f "$STAMP"
mkdir -p "$DEST"

# 2. arm64 .debs, from a private arm64 package index pinned to bookworm (the host's apt state and
#    dpkg architecture list are left untouched)
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script needs a Debian/Ubuntu host"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS"
touch "$APTDIR/status"
# Its own sources list, pinned to bookworm (python3.11), whatever release the host runs.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$KEYRING" ] || die "$KEYRING missing: apt-get install debian-archive-keyring"
MIRROR="${EDGEQAT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${EDGEQAT_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
cat >"$APTDIR/sources.list" <<EOF
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm main
deb [arch=arm64 signed-by=$KEYRING] $MIRROR bookworm-updates main
deb [arch=arm64 signed-by=$KEYRING] $SECURITY bookworm-security main
EOF
APT=(-o APT::Architecture=arm64 -o APT::Architectures=arm64
     -o Dir::Etc::SourceList="$APTDIR/sources.list" -o Dir::Etc::SourceParts=/nonexistent
     -o Dir::State::Lists="$APTDIR/lists" -o Dir::State::status="$APTDIR/status"
     -o Dir::Cache="$APTDIR/cache" -o Debug::NoLocking=1 -q)
if [ "$(id -u)" -ne 0 ]; then
  APT+=(-o APT::Sandbox::User="$(id -un)")
fi
say "fetching the arm64 package index (private apt state in $APTDIR)"
apt-get "${APT[@]}" update >"$APTDIR/update.log" 2>&1 \
  || { tail -20 "$APTDIR/update.log" >&2; die "apt-get update for arm64 failed"; }
say "downloading ${#PKGS[@]} arm64 packages"
rm -f "$DEBS"/*.deb
(cd "$DEBS" && apt-get "${APT[@]}" download "${PKGS[@]/%/:arm64}" >"$APTDIR/download.log" 2>&1) \
  || { tail -20 "$APTDIR/download.log" >&2; die "apt-get download of the arm64 packages failed"; }

say "unpacking into $ROOT"
rm -rf "$ROOT"
mkdir -p "$ROOT"
for deb in "$DEBS"/*.deb; do
  dpkg -x "$deb" "$ROOT" || die "dpkg -x $deb failed"
done
[ -x "$ROOT/usr/bin/python3.11" ] || die "$ROOT/usr/bin/python3.11 missing after unpacking"

# 3. aarch64 wheels
if [ -n "${EDGEQAT_PIP:-}" ]; then
  PIP=("$EDGEQAT_PIP")
elif [ -x "$REPO/.venv/bin/pip" ]; then
  PIP=("$REPO/.venv/bin/pip")
else
  PIP=(python3 -m pip)
fi
say "installing aarch64 wheels ai-edge-litert==$LITERT_VERSION numpy==$NUMPY_VERSION into $SITE"
rm -rf "$SITE"
# pip does not widen a manylinux_2_N platform to older glibcs by itself: list them all, up to
# bookworm's glibc 2.36 (LiteRT's aarch64 wheel is manylinux_2_27)
PLATFORMS=()
for minor in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${minor}_aarch64"); done
"${PIP[@]}" install --quiet --disable-pip-version-check --no-compile --target "$SITE" -c "$REPO/constraints.txt" \
  "${PLATFORMS[@]}" --python-version 3.11 --implementation cp --abi cp311 \
  --only-binary=:all: "ai-edge-litert==$LITERT_VERSION" "numpy==$NUMPY_VERSION" \
  || die "pip could not install the aarch64 wheels"

# 4. smoke test: the emulated interpreter imports both (no model is run here: LiteRT's CPU
#    detection needs an ARM /proc/cpuinfo, which edgeqat.devices.qemu bind-mounts per run)
say "smoke test: import numpy, ai_edge_litert.interpreter under qemu-aarch64"
out="$(env -i PATH=/usr/bin:/bin PYTHONHOME="$ROOT/usr" PYTHONPATH="$SITE" PYTHONNOUSERSITE=1 \
  PYTHONDONTWRITEBYTECODE=1 qemu-aarch64-static -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/python3.11" -c \
  'import platform, numpy, ai_edge_litert.interpreter as i; print(platform.machine(), numpy.__version__, i.__name__)' 2>&1)" \
  || die "the aarch64 python could not import numpy / ai_edge_litert:
$out"
say "ok: $out"

# QEMU's -L redirects the guest's absolute paths into the root when the file exists
# there, so a non-root run (no `unshare -m` to bind-mount over /proc/cpuinfo) can still
# show LiteRT an ARM CPU: edgeqat.devices.qemu gives each run its own proc/cpuinfo.
rm -rf "$APTDIR" "$DEBS"   # only needed to build the root
echo "$WANT" >"$STAMP"
say "done: $(du -sh "$DEST" | cut -f1) in $DEST"
