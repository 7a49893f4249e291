#!/usr/bin/env bash
# Make sure the base image of the lab (default: debian:bookworm-slim) exists locally.
#
#   scripts/base-image.sh [IMAGE]        (IMAGE defaults to $TCPLAB_BASE or debian:bookworm-slim)
#
# 1. If the image is already present, do nothing.
# 2. Otherwise try `docker pull` (what happens on a machine that reaches a registry).
# 3. If the pull fails (no registry), build an equivalent Debian bookworm root file system
#    with `debootstrap --variant=minbase` from the Debian mirror this machine's apt already
#    uses, and `docker import` it under the same tag, so that `FROM debian:bookworm-slim`
#    and a plain `docker compose up` work afterwards.
#
# Environment:
#   TCPLAB_DEBIAN_MIRROR   Debian mirror for debootstrap (default: the first Debian mirror
#                          found in /etc/apt/sources.list*, else debootstrap's own default)
#   TCPLAB_NO_PULL=1       skip the pull attempt (saves its timeout on a known-offline box)
#   TCPLAB_PULL_TIMEOUT    seconds for the pull attempt (default 60)
#
# Needs root (debootstrap) only for step 3; installs debootstrap with apt-get if missing.
set -euo pipefail

IMAGE="${1:-${TCPLAB_BASE:-debian:bookworm-slim}}"
SUITE="${TCPLAB_DEBIAN_SUITE:-bookworm}"

log() { printf 'base-image: %s\n' "$*" >&2; }

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is present"
    exit 0
fi

if [ "${TCPLAB_NO_PULL:-0}" != 1 ]; then
    log "pulling $IMAGE ..."
    if timeout "${TCPLAB_PULL_TIMEOUT:-60}" docker pull "$IMAGE" >&2; then
        exit 0
    fi
    log "pull failed; building an equivalent image locally with debootstrap"
fi

case "$IMAGE" in
    *bookworm*) ;;
    *) log "warning: $IMAGE is not a bookworm image; creating a Debian $SUITE base under its name" ;;
esac

if [ "$(id -u)" != 0 ]; then
    log "creating the base image needs root (debootstrap); run: sudo $0 $IMAGE"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq debootstrap >&2
fi

# The Debian mirror apt already uses on this machine (deb822 .sources or one-line .list).
# Only entries that carry the plain suite ("bookworm"), not -security/-updates ones.
find_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v s="$SUITE" '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # paragraphs: remember URIs and Suites, print URIs of a deb paragraph with SUITE
        awk -v s="$SUITE" '
            function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uris != "" && enabled != "no") { split(uris, u, " "); print u[1]; found = 1 }
                               types = ""; uris = ""; suites = ""; enabled = "" }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            /^[Tt]ypes:/   { sub(/^[^:]*:[ \t]*/, ""); types = $0 }
            /^URIs:/       { sub(/^[^:]*:[ \t]*/, ""); uris = $0 }
            /^Suites:/     { sub(/^[^:]*:[ \t]*/, ""); suites = $0 }
            /^Enabled:/    { sub(/^[^:]*:[ \t]*/, ""); enabled = tolower($0) }
            END { if (!found) flush() }' "$f"
    done
}

MIRROR="${TCPLAB_DEBIAN_MIRROR:-$(find_mirror | head -n1)}"
log "debootstrap $SUITE from ${MIRROR:-the default mirror of debootstrap} ..."

WORK="$(mktemp -d /tmp/tcplab-base.XXXXXX)"
ROOT="$WORK/root"
cleanup() { rm -rf --one-file-system "$WORK"; }
trap cleanup EXIT

start=$(date +%s)
# shellcheck disable=SC2086
if ! debootstrap --variant=minbase "$SUITE" "$ROOT" $MIRROR >"$WORK/debootstrap.log" 2>&1; then
    tail -n 30 "$WORK/debootstrap.log" >&2
    log "debootstrap failed (full log above was $WORK/debootstrap.log)"
    exit 1
fi

# Apt sources like the official image: SUITE, SUITE-updates and, when the mirror's
# path ends in /debian, the security archive beside it.
if [ -n "$MIRROR" ]; then
    base_mirror="$MIRROR"
else
    base_mirror="$(awk '$1 == "deb" { print $2; exit }' "$ROOT/etc/apt/sources.list")"
fi
{
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$base_mirror" "$SUITE" "$SUITE"
    case "$base_mirror" in
        */debian|*/debian/)
            printf '\nTypes: deb\nURIs: %s-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "${base_mirror%/}" "$SUITE" ;;
    esac
} >"$ROOT/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOT/etc/apt/sources.list"

# Trim like the slim image, and leave no trace of this machine in the image:
# docker provides /etc/hosts, /etc/hostname and /etc/resolv.conf at run time.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/root/.bash_history \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
: >"$ROOT/etc/resolv.conf"
: >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n' >"$ROOT/etc/hosts"
# Keep docs and manuals out of later apt installs too, as debian:*-slim does.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
# No apt caches in image layers (the official images do the same).
printf 'APT::Keep-Downloaded-Packages "false";\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n' \
    >"$ROOT/etc/apt/apt.conf.d/docker-clean"

log "importing as $IMAGE ..."
tar --numeric-owner --xattrs -C "$ROOT" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.tcplab.base=debootstrap-$SUITE-minbase" \
    --message "tcplab: debootstrap --variant=minbase $SUITE" \
    - "$IMAGE" >/dev/null
elapsed=$(( $(date +%s) - start ))
size_mb=$(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%d", $1 / 1e6 }')
log "$IMAGE created in ${elapsed} s (${size_mb} MB)"
