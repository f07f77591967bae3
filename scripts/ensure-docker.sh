#!/usr/bin/env bash
# Make sure a Docker engine answers, starting one if needed. Safe to re-run.
#
# 1. If `docker version` already reaches a server (DOCKER_HOST is honoured by
#    the client), use it as is.
# 2. Otherwise install Debian's docker.io (only if dockerd is missing) and start
#    dockerd detached from the calling shell, then wait for it to answer.
#
# There is no init system on the machines this targets, so we cannot rely on
# `systemctl start docker`; dockerd is started with setsid+nohup instead.
#
# Environment:
#   DOCKERD_LOG         daemon log file   (default /var/log/dockerd-executor.log)
#   DOCKERD_WAIT        seconds to wait   (default 60)
#   DOCKERD_EXTRA_ARGS  extra dockerd flags, word-split (e.g. "--storage-driver=vfs")
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/dockerd-executor.log}
WAIT=${DOCKERD_WAIT:-60}
PIDFILE=/var/run/docker.pid

say() { printf 'ensure-docker: %s\n' "$*"; }
die() { printf 'ensure-docker: ERROR: %s\n' "$*" >&2; exit 1; }

engine_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    # `timeout` so a half-started daemon cannot hang the check.
    timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

daemon_alive() {
    # The default pidfile only describes the daemon behind the default socket.
    [[ -z ${DOCKER_HOST:-} && -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

wait_for_engine() {  # $1 = pid of the dockerd we started (may be empty)
    local pid=${1:-} i
    for ((i = 0; i < WAIT; i++)); do
        engine_answers && return 0
        # Give up early if our daemon already died: no point waiting 60 s.
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 1
    done
    return 1
}

start_dockerd() {  # args: extra dockerd flags; echoes the daemon pid
    local -a cmd=(dockerd)
    # A daemon is only started for a local unix socket; for tcp:// or ssh://
    # DOCKER_HOST the engine lives elsewhere and starting one here is wrong.
    if [[ -n ${DOCKER_HOST:-} ]]; then
        cmd+=(-H "$DOCKER_HOST")
    fi
    cmd+=("$@")
    say "starting: ${cmd[*]} (log: $LOG)"
    # setsid: own session, so the daemon survives the shell (and its job
    # control / SIGHUP) that ran this script. stdin from /dev/null so nothing
    # keeps the caller's terminal or pipe open.
    setsid nohup "${cmd[@]}" >>"$LOG" 2>&1 </dev/null &
    STARTED_PID=$!
}

# --- 1. existing engine -------------------------------------------------------
if engine_answers; then
    say "engine already answers at ${DOCKER_HOST:-default socket} (server $(docker version --format '{{.Server.Version}}')); using it as is"
    exit 0
fi

if [[ -n ${DOCKER_HOST:-} && ${DOCKER_HOST} != unix://* ]]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer and is not a local unix socket; refusing to start a local daemon"
fi
[[ $(id -u) -eq 0 ]] || die "no engine answers and starting dockerd needs root"

# A daemon may be up but still initialising (e.g. another run just started it):
# wait for it instead of starting a second one that would fight over the pidfile.
if daemon_alive; then
    say "dockerd (pid $(cat "$PIDFILE")) is running but not answering yet; waiting up to ${WAIT}s"
    wait_for_engine "$(cat "$PIDFILE")" && { say "engine answers"; exit 0; }
    die "dockerd pid $(cat "$PIDFILE") does not answer after ${WAIT}s; see $LOG"
fi

# --- 2. install ---------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # Refresh package lists only when they do not know docker.io yet; a full
    # `apt-get update` on every run would make the script slow for no gain.
    # (Output captured first: `| grep -q` under pipefail would report SIGPIPE.)
    policy=$(apt-cache policy docker.io 2>/dev/null || true)
    if [[ $policy != *"Candidate: "[0-9]* ]]; then
        say "apt-get update (docker.io unknown to apt)"
        apt-get update -q >/dev/null
    fi
    say "installing Debian package docker.io"
    apt-get install -y -q --no-install-recommends docker.io >/dev/null
    # On hosts with an init system the postinst may have started the daemon.
    if engine_answers; then
        say "engine answers after install (started by package scripts)"
        exit 0
    fi
else
    say "dockerd already installed at $(command -v dockerd)"
fi
command -v docker >/dev/null 2>&1 || die "docker client missing even after installing docker.io"

# --- 3. start -----------------------------------------------------------------
# Flags, as measured on the target VM (Debian bookworm, kernel 6.x, cgroup v1
# hybrid, overlay module present, nftables-backed iptables working):
#  * storage driver: none forced. dockerd picks overlay2 when the backing fs
#    supports it and falls back on its own otherwise (e.g. vfs when /var/lib/docker
#    is itself on overlayfs); use DOCKERD_EXTRA_ARGS=--storage-driver=vfs to force.
#  * networking: the stock docker0 bridge + iptables NAT works here and is what
#    `docker build` uses to let apt reach the mirror. Sandbox containers run with
#    network_mode="none", so if bridge/iptables setup fails (typical inside
#    unprivileged containers or kernels without netfilter) we retry once with
#    --iptables=false --bridge=none; builds then need `docker build --network host`.
mkdir -p "$(dirname "$LOG")"
read -r -a extra <<<"${DOCKERD_EXTRA_ARGS:-}"
STARTED_PID=
start_dockerd "${extra[@]}"
if wait_for_engine "$STARTED_PID"; then
    say "engine answers (dockerd pid $STARTED_PID, storage driver $(docker info --format '{{.Driver}}'))"
    exit 0
fi

if ! kill -0 "$STARTED_PID" 2>/dev/null && grep -qiE 'iptables|bridge|docker0' <(tail -n 50 "$LOG"); then
    say "dockerd exited on a network setup error; retrying without bridge/iptables"
    start_dockerd "${extra[@]}" --iptables=false --bridge=none
    if wait_for_engine "$STARTED_PID"; then
        say "engine answers (dockerd pid $STARTED_PID, no bridge: use 'docker build --network host')"
        exit 0
    fi
fi

kill -0 "$STARTED_PID" 2>/dev/null && say "dockerd pid $STARTED_PID still running but not answering"
die "Docker engine did not come up within ${WAIT}s; see $LOG (last lines: tail -n 50 $LOG)"
