#!/usr/bin/env bash
# Assembles the root file system of filegate's container image in OUT: a static filegate binary (glibc,
# crt-static: no shared library to ship, DNS resolution built into glibc since 2.34), the CA certificates,
# a passwd and group naming the unprivileged user 65532 (filegate), and the data volume /data it owns.
# Used by the Containerfile's build stage and by scripts/image.sh, so both make the same image.
#
#   scripts/image-rootfs.sh OUT
set -euo pipefail
OUT=${1:?usage: image-rootfs.sh OUT}
cd "$(dirname "$0")/.."
TARGET=$(rustc -vV | awk '/^host:/ {print $2}')
case $TARGET in
  *-linux-gnu) ;;
  *) echo "the image is built for Linux with glibc; this host is $TARGET" >&2; exit 1 ;;
esac
CERTS=/etc/ssl/certs/ca-certificates.crt
if [[ ! -f $CERTS ]]; then
  apt-get install -y -q ca-certificates >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q ca-certificates >/dev/null; }
fi
# A target given explicitly: the static flags then apply to filegate, not to build scripts and macros.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$TARGET" >&2
rm -rf "$OUT"
mkdir -p "$OUT/etc/ssl/certs" "$OUT/data" "$OUT/tmp"
# Stripped: the release profile keeps line tables for profiling, which the image does not need (128 → 25 MB).
install -m 0755 -s "${CARGO_TARGET_DIR:-target}/$TARGET/release/filegate" "$OUT/filegate"
install -m 0644 "$CERTS" "$OUT/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nfilegate:x:65532:65532:filegate:/data:/sbin/nologin\n' >"$OUT/etc/passwd"
printf 'root:x:0:\nfilegate:x:65532:\n' >"$OUT/etc/group"
chown 65532:65532 "$OUT/data"
chmod 0700 "$OUT/data"
chmod 1777 "$OUT/tmp"
echo "$OUT: $(du -sh "$OUT" | cut -f1) ($(file -b "$OUT/filegate" | cut -d, -f1,4))" >&2
