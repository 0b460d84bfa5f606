#!/usr/bin/env bash
# `make docker`: a Docker engine for `make image` and the docker pipeline test, on a machine that
# starts none: Debian's docker.io (apt-get, as root), then dockerd in the background, waiting for
# its socket. An engine that already answers is left alone.
#   EDGEQAT_DOCKERD_LOG  dockerd's log (default /tmp/edgeqat-dockerd.log); the pid of a dockerd
#                        this script started goes to the same path + .pid (to stop it after)
set -euo pipefail
say() { echo "[dockerd] $*"; }
die() { echo "[dockerd] ERROR: $*" >&2; exit 1; }

LOG="${EDGEQAT_DOCKERD_LOG:-/tmp/edgeqat-dockerd.log}"
rm -f "$LOG.pid"   # written only for a dockerd started below
if docker info >/dev/null 2>&1; then
  say "an engine already answers: $(docker info -f '{{.ServerVersion}}')"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "starting dockerd needs root"
if ! command -v dockerd >/dev/null 2>&1; then
  say "installing docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq docker.io >/dev/null 2>&1; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq docker.io >/dev/null || die "apt-get install docker.io failed"
  fi
fi

# setsid: its own session, so it outlives the make that started it (CI's later steps use it)
# A dockerd still shutting down holds its pid file (wait for it); one that was killed leaves
# the file behind, which stops a new one from starting (remove it).
PIDFILE=/var/run/docker.pid
for _ in $(seq 30); do
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
  sleep 1
done
if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  say "removing the stale $PIDFILE of a dockerd that is gone"
  rm -f "$PIDFILE"
fi
setsid dockerd >"$LOG" 2>&1 </dev/null &
echo $! >"$LOG.pid"
for _ in $(seq 60); do
  if [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1; then
    say "dockerd $(docker info -f '{{.ServerVersion}}') up (pid $(cat "$LOG.pid"), log $LOG)"
    exit 0
  fi
  kill -0 "$(cat "$LOG.pid")" 2>/dev/null || { tail -20 "$LOG" >&2; die "dockerd exited (log above)"; }
  sleep 1
done
tail -20 "$LOG" >&2
die "dockerd did not answer within 60 s (log above)"
