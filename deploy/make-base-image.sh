#!/usr/bin/env bash
# make-base-image.sh - build a Debian bookworm base image locally, for machines whose Docker engine
# cannot pull from a registry (it starts with no images): debootstrap a minimal root file system
# into a folder, then `docker import` it as gureum-base:bookworm. The Dockerfile builds FROM it
# (`make image` passes --build-arg BASE=gureum-base:bookworm); elsewhere the official
# debian:bookworm image works unchanged and this script is not needed.
#
# Cached: does nothing when the image exists (FORCE=1 rebuilds it); reuses a finished root file
# system folder (a partial one is started over). Run as root (debootstrap needs it).
#
# Environment:
#   GUREUM_BASE_IMAGE    image to create               (default gureum-base:bookworm)
#   GUREUM_BASE_ROOTFS   folder for the root file system (default /var/cache/gureum/rootfs-bookworm)
#   GUREUM_DEBIAN_MIRROR Debian mirror                 (default: the one apt uses on this machine)
#   FORCE=1              rebuild the image even if it exists (the folder is still reused)
set -euo pipefail

IMAGE=${GUREUM_BASE_IMAGE:-gureum-base:bookworm}
ROOTFS=${GUREUM_BASE_ROOTFS:-/var/cache/gureum/rootfs-bookworm}
SUITE=bookworm
DONE="$ROOTFS.done"   # beside the folder, so that it does not end up in the image

say() { echo "make-base-image: $*"; }
die() { echo "make-base-image: ERROR: $*" >&2; exit 1; }

command -v docker >/dev/null || die "the docker command is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 ||
  die "no Docker engine answers (docker info failed); start it (systemctl start docker, or dockerd &) and run this again"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "$IMAGE already exists, nothing to do (FORCE=1 $0 rebuilds it)"
  exit 0
fi

# The mirror apt uses here: the first http(s) URI serving $SUITE in sources.list or the deb822
# .sources files, skipping the security archive (debootstrap wants the main archive).
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {
                          if ($(i+1) == s && $i !~ /security/) { print $i; exit } } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # Paragraphs: URIs and Suites lines of one stanza; an Enabled: no stanza is skipped.
    awk -v s="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; ok = 0; off = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); uris = $i }
          if ($i ~ /^Suites:/) { n = split($i, w, /[ \t]+/); for (j = 2; j <= n; j++) if (w[j] == s) ok = 1 }
          if ($i ~ /^Enabled:[ \t]*no/) off = 1
        }
        if (ok && !off) { n = split(uris, u, /[ \t]+/)
          for (j = 1; j <= n; j++) if (u[j] ~ /^https?:/ && u[j] !~ /security/) { print u[j]; exit } } }' "$f"
  done
}

if [ -f "$DONE" ] && [ -d "$ROOTFS" ]; then
  say "reusing the root file system in $ROOTFS (delete it and $DONE to start over)"
else
  [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run this as root (sudo $0)"
  command -v debootstrap >/dev/null ||
    die "debootstrap is not installed: apt-get install debootstrap (or run deploy/install-deps.sh)"
  MIRROR=${GUREUM_DEBIAN_MIRROR:-$(find_mirror | head -1)}
  [ -n "$MIRROR" ] ||
    die "no Debian $SUITE mirror found in /etc/apt/sources.list*; set GUREUM_DEBIAN_MIRROR=http://deb.debian.org/debian"
  if [ -e "$ROOTFS" ]; then
    say "removing the unfinished root file system in $ROOTFS"
    rm -rf "$ROOTFS"
  fi
  mkdir -p "$ROOTFS"
  LOG="$ROOTFS.log"
  say "debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR (a few minutes; log: $LOG)"
  # debootstrap's I: lines are its progress (retrieving, validating, unpacking, configuring).
  # Its exit status is judged from the log below, so the pipeline's own status is ignored.
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" 2>&1 | tee "$LOG" |
    awk '/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [^t]/ {
           split($0, w, " "); if (n[w[2]]++ % 20 != 0) next }
         /^(I|W|E): / { print "  " $0; fflush() }' || true
  if ! grep -q '^I: Base system installed successfully' "$LOG"; then
    tail -15 "$LOG" >&2
    die "debootstrap failed (full log: $LOG). Check that $MIRROR answers (apt-get update works?), or set GUREUM_DEBIAN_MIRROR; then run this again"
  fi

  # Make it look like the official debian:bookworm image: deb822 sources with updates and
  # security, no package caches or lists, apt told to keep none.
  rm -f "$ROOTFS/etc/apt/sources.list"
  SECURITY=http://deb.debian.org/debian-security
  case "$MIRROR" in */debian | */debian/) SECURITY="${MIRROR%/}-security" ;; esac
  cat > "$ROOTFS/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat > "$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  echo 'APT::Install-Recommends "false";' > "$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends"
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log \
         "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/etc/hostname
  : > "$ROOTFS/etc/machine-id" 2>/dev/null || true
  touch "$DONE"
  say "root file system ready: $(du -sh --apparent-size "$ROOTFS" | cut -f1) in $ROOTFS"
fi

say "importing $ROOTFS as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE" - "$IMAGE" >/dev/null ||
  die "docker import failed; is there space left under $(docker info -f '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)?"
say "done: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE")"
