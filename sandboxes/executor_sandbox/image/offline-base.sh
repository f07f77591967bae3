#!/usr/bin/env bash
# Make a Debian base image without a container registry, from the host's apt
# sources: `executor sandbox build --base offline` runs this, then builds
# ./Dockerfile on top of the result (BASE_IMAGE).
#
#   1. debootstrap a minimal rootfs (variant minbase) from the mirror the host's
#      apt already uses (read at run time, never hard-coded),
#   2. point the rootfs' apt at the host's sources with its proxy / CA /
#      validity settings, trim docs and caches, drop host identity,
#   3. `docker import` it as TAG (the engine named by DOCKER_HOST, if set).
#
# Nothing else: building and checking the sandbox image is the executor's job.
# TAG is chosen by the caller (the executor names it after a hash of this
# script, so a changed script makes a new base and an unchanged one is reused).
#
# Usage: offline-base.sh TAG         (as root: debootstrap mounts, chroots)
# Environment:
#   SUITE               Debian suite    (default bookworm)
#   MIRROR              override the mirror URL read from the host's apt sources
#   DEBOOTSTRAP_INCLUDE extra packages for debootstrap (default none: it only
#                       sees the main suite, while the docker build also uses
#                       the host's -updates/-security sources)
# Progress goes to stdout, one line at a time; debootstrap's per-package lines
# are left out (its whole log is printed if it fails).
set -euo pipefail

SUITE=${SUITE:-bookworm}
DEBOOTSTRAP_INCLUDE=${DEBOOTSTRAP_INCLUDE:-}
WORK_PREFIX=/var/tmp/executor-offline-base

case ${1:-} in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    '' | -*) echo "usage: $0 TAG" >&2; exit 2 ;;
esac
[[ $# -eq 1 ]] || { echo "usage: $0 TAG" >&2; exit 2; }
TAG=$1

say() { printf 'offline-base: %s\n' "$*"; }
die() { printf 'offline-base: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap mounts and chroots)"
command -v docker >/dev/null 2>&1 || die "the docker command-line client is needed for docker import"

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
# Work directory: ours is removed on exit; those of killed runs on the next one
# ---------------------------------------------------------------------------

remove_workdir() {  # $1 = work directory
    # debootstrap mounts proc/sys (and may bind /dev) inside the target; a failed
    # run can leave them mounted, and rm -rf must never walk into the host's /dev.
    findmnt -rn -o TARGET | grep -F "$1/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$1"
}

shopt -s nullglob
for stale in "$WORK_PREFIX".*; do
    pid=${stale#"$WORK_PREFIX".}
    pid=${pid%%.*}
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
        say "removing $stale, left by a run that was killed"
        remove_workdir "$stale"
    fi
done
shopt -u nullglob

WORK=$(mktemp -d "$WORK_PREFIX.$$.XXXXXX")
trap 'remove_workdir "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# Rootfs
# ---------------------------------------------------------------------------

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
        echo '// Copied from the build host by offline-base.sh (proxy / validity checks)'
        [[ -n $HOST_APT_CONF ]] && echo "$HOST_APT_CONF"
        # https mirrors (and TLS-intercepting proxies) need the host's trust
        # store; minbase has no ca-certificates package. A private copy under
        # /etc/apt survives a later install of ca-certificates.
        if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
            echo 'Acquire::https::CaInfo "/etc/apt/host-ca-certificates.crt";'
        fi
    } >"$root/etc/apt/apt.conf.d/90build-host"
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/apt/host-ca-certificates.crt"
    fi

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

if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >"$WORK/apt.log" 2>&1 ||
        { cat "$WORK/apt.log" >&2; die "cannot install debootstrap"; }
fi

ROOTFS=$WORK/rootfs
say "debootstrap --variant=minbase $SUITE${DEBOOTSTRAP_INCLUDE:+ (+$DEBOOTSTRAP_INCLUDE)}"
# Milestones only; the full log is kept for a failure. awk (unlike grep -v)
# exits 0 whatever it filters, so PIPESTATUS[0] is debootstrap's own status.
set +e
debootstrap --variant=minbase ${DEBOOTSTRAP_INCLUDE:+--include="$DEBOOTSTRAP_INCLUDE"} \
    "$SUITE" "$ROOTFS" "$MIRROR" 2>&1 |
    tee "$WORK/debootstrap.log" |
    awk '!/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [^ ]+(\.\.\.| [0-9][^ ]*)$/ { print "debootstrap: " $0; fflush() }'
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
    tail -n 40 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (exit $status) fetching $SUITE from $MIRROR"
fi

configure_rootfs "$ROOTFS"

say "importing the rootfs ($(du -sh --one-file-system "$ROOTFS" | cut -f1)) as $TAG"
# --numeric-owner: ids must be the rootfs' own, not re-mapped via host names.
tar --numeric-owner -C "$ROOTFS" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        --message "debootstrap --variant=minbase $SUITE" \
        - "$TAG" >/dev/null
say "made $TAG"
