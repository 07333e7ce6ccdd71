#!/usr/bin/env bash
# Builds the Dockerfile into the image npvdb:<chart appVersion> without a
# daemon: buildah (Debian's package), chroot isolation, vfs storage, as root.
#
#   scripts/build-image.sh            # base image if missing, then the image
#   scripts/build-image.sh --base     # only the base image
#   scripts/build-image.sh --rebase   # make the base image again, then build
#   scripts/build-image.sh --check    # build, then run tests/image/check_image.py
#
# No image registry is needed. The Dockerfile's two bases (debian:12 and
# debian:12-slim by default) are replaced by one local Debian 12 image,
# localhost/npvdb-debian:12, made here with debootstrap from Debian's own
# mirror ($DEBIAN_MIRROR) and imported with `buildah bud` (FROM scratch +
# ADD of the root filesystem's tar). Its apt sources are those of the official
# image (bookworm, bookworm-updates, bookworm-security), and like
# debian:12-slim it leaves out docs, man pages and locales.
#
# vfs keeps a full copy of every layer: the base, the cached build layers and
# the image take about 4 GB in /var/lib/containers, and each rebuild after a
# source change adds about 1 GB of untagged layers;
# `buildah --storage-driver vfs rmi --prune` frees them (the next build then
# installs the build stage's packages again).
#
# Environment: NPVDB_IMAGE (default npvdb:<appVersion>), DEBIAN_MIRROR
# (default http://deb.debian.org/debian), NPVDB_BASE_IMAGE (default
# localhost/npvdb-debian:12), BUILDAH_STORAGE_DRIVER (default vfs).
#
# tests/image/check_image.py (ctest -L image, or --check here) runs the built
# image: Health, Init + Insert + Search with tokens, SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=build
case "${1:-}" in
  "") ;;
  --base) MODE=base ;;
  --rebase) MODE=rebase ;;
  --check) MODE=check ;;
  *) echo "usage: $0 [--base|--rebase|--check]" >&2; exit 2 ;;
esac

APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' helm/npvdb/Chart.yaml)
IMAGE=${NPVDB_IMAGE:-npvdb:${APP_VERSION}}
BASE=${NPVDB_BASE_IMAGE:-localhost/npvdb-debian:12}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export BUILDAH_STORAGE_DRIVER=${BUILDAH_STORAGE_DRIVER:-vfs}
BUILDAH=(buildah --storage-driver "$BUILDAH_STORAGE_DRIVER")

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || {
    echo "build-image: $tool is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  }
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: run as root (chroot isolation)" >&2; exit 1; }

make_base() {
  local work
  work=$(mktemp -d /var/tmp/npvdb-base.XXXXXX)
  trap 'rm -rf "$work"' RETURN
  echo "build-image: debootstrap bookworm from $MIRROR (about 2 minutes)"
  local t0=$SECONDS
  debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; return 1; }
  # The official image's sources and its slim variant's dpkg excludes.
  rm -f "$work/rootfs/etc/apt/sources.list"
  cat > "$work/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat > "$work/rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
EOF
  cat > "$work/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  mkdir -p "$work/ctx"
  tar -C "$work/rootfs" --numeric-owner -cf "$work/ctx/rootfs.tar" .
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' > "$work/ctx/Containerfile"
  "${BUILDAH[@]}" bud --isolation chroot --pull=never -q -t "$BASE" \
    -f "$work/ctx/Containerfile" "$work/ctx" >/dev/null
  echo "build-image: base $BASE ready ($((SECONDS - t0)) s)"
}

have_base() { "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; }

if [ "$MODE" = rebase ] || ! have_base; then
  make_base
else
  echo "build-image: base $BASE present (--rebase makes it again)"
fi
[ "$MODE" = base ] && exit 0

echo "build-image: buildah bud -> $IMAGE"
t0=$SECONDS
# --layers: a rebuild after a source change reuses the apt layers.
"${BUILDAH[@]}" bud --isolation chroot --pull=never --layers \
  --build-arg DEBIAN_IMAGE="$BASE" --build-arg DEBIAN_SLIM_IMAGE="$BASE" \
  --label org.opencontainers.image.revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)" \
  --label org.opencontainers.image.version="$APP_VERSION" \
  -t "$IMAGE" -f Dockerfile .
echo "build-image: $IMAGE built in $((SECONDS - t0)) s"
"${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}} {{.ID}} {{.Size}}' "$IMAGE"

if [ "$MODE" = check ]; then
  NPVDB_IMAGE="$IMAGE" NPVDB_PYTHON_STAGE="${NPVDB_PYTHON_STAGE:-$PWD/build/clients/python/stage}" \
    /usr/bin/python3 tests/image/check_image.py
fi
