#!/usr/bin/env bash
# Builds filegate's container image on this machine, with no image registry reachable: the Containerfile's
# final stage over a root file system assembled here (scripts/image-rootfs.sh stands in for the
# Containerfile's build stage, through buildah's --build-context), tagged localhost/filegate:latest.
# Installs Debian's buildah and podman once (podman mounts the image for scripts/test-image.sh).
#
#   scripts/image.sh [TAG]        default localhost/filegate:latest
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-localhost/filegate:latest}
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v file >/dev/null; then
  echo "installing buildah and podman (Debian)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman file >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman file >/dev/null; }
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/context"
scripts/image-rootfs.sh "$WORK/stage/out"
buildah build --quiet --network=none --layers=false --build-context build="$WORK/stage" \
  -f Containerfile -t "$TAG" "$WORK/context" >/dev/null
echo "$TAG: $(podman image inspect --format '{{.Size}}' "$TAG" | numfmt --to=iec) ($(podman image inspect --format '{{.Id}}' "$TAG" | cut -c1-12))" >&2
echo "$TAG"
