#!/usr/bin/env bash
# Build the sandbox image on a host that has a Debian mirror (via apt) but no
# container registry, so no base image can be pulled:
#
#   1. debootstrap a minimal bookworm rootfs (variant minbase) from the mirror the
#      host's apt already uses (read at run time, never hard-coded),
#   2. point the rootfs' apt at that same mirror with the host's proxy / CA /
#      validity settings, then `docker import` it as the base image,
#   3. `docker build` ./Dockerfile on top of it (apt needs network here only),
#   4. smoke-test the result with --network none.
#
# Idempotent: an existing base image is reused (pass --rebuild-base to redo it);
# the docker build is cached.
#
# Usage: build-offline-base.sh [--rebuild-base] [--no-verify]
# Environment:
#   BASE_TAG            imported base   (default proposal-executor/base:bookworm)
#   IMAGE_TAG           final image     (default proposal-executor/sandbox:bookworm)
#   SUITE               Debian suite    (default bookworm)
#   MIRROR              override the mirror URL read from the host's apt sources
#   DEBOOTSTRAP_INCLUDE extra packages baked into the base by debootstrap, e.g.
#                       "postgresql-15,nodejs,python3". Off by default: debootstrap
#                       only sees the main suite, while the docker build also uses
#                       the host's -updates/-security sources, so versions are newer.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SUITE=${SUITE:-bookworm}
BASE_TAG=${BASE_TAG:-proposal-executor/base:bookworm}
IMAGE_TAG=${IMAGE_TAG:-proposal-executor/sandbox:bookworm}
DEBOOTSTRAP_INCLUDE=${DEBOOTSTRAP_INCLUDE:-}
REBUILD_BASE=0
VERIFY=1

for arg in "$@"; do
    case $arg in
        --rebuild-base) REBUILD_BASE=1 ;;
        --no-verify) VERIFY=0 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

say() { printf 'build-offline-base: %s\n' "$*"; }
die() { printf 'build-offline-base: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, docker)"

T_START=$(now)
declare -A TIMING=()

# ---------------------------------------------------------------------------
# Host apt configuration, read at run time
# ---------------------------------------------------------------------------

# First URI of an enabled `deb` source for $SUITE: deb822 *.sources first (the
# bookworm default), then one-line sources.list / *.list.
host_mirror() {
    local f uri=
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        uri=$(awk -v suite="$SUITE" '
            function flush() {
                if (!done && !disabled && uri != "" &&
                    (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
                    print uri; done = 1
                }
                types = suites = uri = ""; disabled = 0
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1)
                if (key == "types:")       { $1 = ""; types = $0 }
                else if (key == "suites:") { $1 = ""; suites = $0 }
                else if (key == "uris:")   { uri = $2 }
                else if (key == "enabled:" && tolower($2) == "no") { disabled = 1 }
            }
            END { flush() }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        [[ -n $uri ]] && { echo "$uri"; return; }
    done
    shopt -u nullglob
}

MIRROR=${MIRROR:-$(host_mirror)}
[[ -n $MIRROR ]] || die "no 'deb' source for suite $SUITE in /etc/apt/sources.list{,.d/}; set MIRROR="

# Host apt settings the image's apt must share to reach the same mirror:
# proxies, and the validity checks this host relaxes (its mirror may be a frozen
# snapshot whose -updates/-security Release files carry an expired Valid-Until).
# Credentials (/etc/apt/auth.conf*) are deliberately NOT copied into an image.
HOST_APT_CONF=$(apt-config dump | grep -E '^Acquire::(([A-Za-z]+::)?Proxy|Check-Valid-Until|Check-Date)' || true)

# debootstrap fetches with wget, which reads proxies from the environment, not
# from apt.conf: bridge the gap when the proxy is only configured for apt.
if [[ -z ${http_proxy:-} ]]; then
    eval "$(apt-config shell APT_HTTP_PROXY Acquire::http::Proxy)"
    [[ -n ${APT_HTTP_PROXY:-} && ${APT_HTTP_PROXY} != DIRECT ]] && export http_proxy=$APT_HTTP_PROXY
fi
if [[ -z ${https_proxy:-} ]]; then
    eval "$(apt-config shell APT_HTTPS_PROXY Acquire::https::Proxy)"
    [[ -n ${APT_HTTPS_PROXY:-} && ${APT_HTTPS_PROXY} != DIRECT ]] && export https_proxy=$APT_HTTPS_PROXY
fi

# ---------------------------------------------------------------------------
# Rootfs -> base image
# ---------------------------------------------------------------------------

WORK=
cleanup() {
    [[ -n $WORK && -d $WORK ]] || return 0
    # debootstrap mounts proc/sys (and may bind /dev) inside the target; a failed
    # run can leave them mounted, and rm -rf must never walk into the host's /dev.
    findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

configure_rootfs() {  # $1 = rootfs
    local root=$1 f key

    # apt sources: the host's own files, so -updates and -security come along.
    rm -f "$root/etc/apt/sources.list"
    shopt -s nullglob
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -s $f ]] && cp "$f" "$root${f}"
    done
    shopt -u nullglob
    # Keyrings named by Signed-By that minbase does not ship (third-party repos).
    while read -r key; do
        [[ -f $key && ! -e $root$key ]] && install -D -m 0644 "$key" "$root$key"
    done < <(grep -hoiE 'signed-by[:=][[:space:]]*/[^] ,]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
             sed -E 's/^[^/]*//' | sort -u)

    {
        echo '// Copied from the build host by build-offline-base.sh (proxy / validity checks)'
        [[ -n $HOST_APT_CONF ]] && echo "$HOST_APT_CONF"
        # https mirrors (and TLS-intercepting proxies) need the host's trust
        # store; minbase has no ca-certificates package. A private copy under
        # /etc/apt survives a later install of ca-certificates.
        if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
            echo 'Acquire::https::CaInfo "/etc/apt/host-ca-certificates.crt";'
        fi
    } >"$root/etc/apt/apt.conf.d/90build-host"
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
        install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/apt/host-ca-certificates.crt"

    # Image-friendly apt/dpkg defaults, as the official slim images do: no
    # recommends, no translations, no docs/man/locales (they only cost size).
    cat >"$root/etc/apt/apt.conf.d/90container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
    cat >"$root/etc/dpkg/dpkg.cfg.d/90container-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian}/*

    # No init in a build container: keep package scripts from starting services.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"

    # debootstrap keeps every downloaded .deb and the main-suite lists.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
        "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/*
    # Host-specific identity must not be baked into every container.
    if [[ -e $root/etc/machine-id ]]; then : >"$root/etc/machine-id"; fi
    rm -f "$root/etc/hostname"
}

"$REPO/scripts/ensure-docker.sh"

if [[ $REBUILD_BASE -eq 0 ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "base $BASE_TAG exists; reusing it (--rebuild-base to redo)"
else
    # Pulling is not attempted: there is no registry here, and a pull would
    # only hang on DNS/connect before failing.
    if ! command -v debootstrap >/dev/null 2>&1; then
        t=$(now)
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
        TIMING[install-debootstrap]=$(elapsed "$t")
    fi

    WORK=$(mktemp -d /var/tmp/offline-base.XXXXXX)
    ROOTFS=$WORK/rootfs
    t=$(now)
    say "debootstrap --variant=minbase $SUITE from $MIRROR${DEBOOTSTRAP_INCLUDE:+ (+$DEBOOTSTRAP_INCLUDE)}"
    if ! debootstrap --variant=minbase ${DEBOOTSTRAP_INCLUDE:+--include="$DEBOOTSTRAP_INCLUDE"} \
        "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        cp "$WORK/debootstrap.log" /var/tmp/offline-base-debootstrap.log
        die "debootstrap failed; log: /var/tmp/offline-base-debootstrap.log"
    fi
    TIMING[debootstrap]=$(elapsed "$t")

    configure_rootfs "$ROOTFS"

    t=$(now)
    say "importing rootfs ($(du -sh --one-file-system "$ROOTFS" | cut -f1)) as $BASE_TAG"
    # --numeric-owner: ids must be the rootfs' own, not re-mapped via host names.
    tar --numeric-owner -C "$ROOTFS" -c . |
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["bash"]' \
            --message "debootstrap --variant=minbase $SUITE" \
            - "$BASE_TAG" >/dev/null
    TIMING[import]=$(elapsed "$t")
    cleanup; WORK=
fi

# ---------------------------------------------------------------------------
# Image build
# ---------------------------------------------------------------------------

build_args=(--build-arg "BASE_IMAGE=$BASE_TAG" -t "$IMAGE_TAG")
# Without the default bridge (dockerd --bridge=none) RUN steps have no network
# at all; the host's network namespace is then the only way for apt to reach
# the mirror.
if ! docker network inspect bridge >/dev/null 2>&1; then
    say "no default bridge network; building with --network host"
    build_args+=(--network host)
fi
# Proxies set only in the environment are not seen by RUN steps unless passed.
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [[ -n ${!v:-} ]] && build_args+=(--build-arg "$v")
done

BUILD_LOG=/var/tmp/sandbox-image-build.log
t=$(now)
say "docker build -> $IMAGE_TAG (log: $BUILD_LOG)"
if ! docker build "${build_args[@]}" "$HERE" >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    die "docker build failed; full log: $BUILD_LOG"
fi
TIMING[build]=$(elapsed "$t")

# ---------------------------------------------------------------------------
# Smoke test, with the network the sandboxes will have: none
# ---------------------------------------------------------------------------

if [[ $VERIFY -eq 1 ]]; then
    t=$(now)
    say "verifying $IMAGE_TAG (--network none)"
    docker run --rm --network none "$IMAGE_TAG" \
        sh -c 'id; psql --version; node --version; python3 --version'
    # Throw-away cluster as the non-root user, socket-only (no TCP listener).
    docker run --rm --network none "$IMAGE_TAG" bash -euc '
        initdb -D /tmp/pg -E UTF8 --locale=C -A trust >/dev/null
        pg_ctl -D /tmp/pg -l /tmp/pg.log -w \
            -o "-k /tmp -c listen_addresses=" start >/dev/null
        echo "SELECT 1 -> $(psql -h /tmp -d postgres -XAtc "SELECT 1")"
        pg_ctl -D /tmp/pg -m fast -w stop >/dev/null'
    # Resource limits the executor will rely on must reach the container's cgroup
    # (v1 on some hosts, v2 on others: the files differ).
    docker run --rm --network none --memory 64m --memory-swap 64m --pids-limit 32 "$IMAGE_TAG" sh -c '
        if [ -f /sys/fs/cgroup/memory.max ]; then
            echo "cgroup v2: memory.max=$(cat /sys/fs/cgroup/memory.max) pids.max=$(cat /sys/fs/cgroup/pids.max)"
        else
            echo "cgroup v1: memory.limit_in_bytes=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" \
                "memsw.limit_in_bytes=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo n/a)" \
                "pids.max=$(cat /sys/fs/cgroup/pids/pids.max)"
        fi'
    TIMING[verify]=$(elapsed "$t")
fi

size=$(docker image inspect --format '{{.Size}}' "$IMAGE_TAG")
for k in install-debootstrap debootstrap import build verify; do
    [[ -n ${TIMING[$k]:-} ]] && say "time $k: ${TIMING[$k]}s"
done
say "time total: $(elapsed "$T_START")s"
say "image $IMAGE_TAG: $((size / 1000 / 1000)) MB (base $BASE_TAG: $(($(docker image inspect --format '{{.Size}}' "$BASE_TAG") / 1000 / 1000)) MB)"
