#!/usr/bin/env bash
# Builds filegate as of the previous release (the commit scripts/previous-release names) and prints the
# binary's path; built once per commit and kept in the target directory.
#
# It is built from `git archive` of that commit into a scratch directory, in the same target directory as
# this tree, so the dependencies both lock alike are compiled once; only the filegate crate builds twice.
# (Cargo links target/debug/filegate to whichever build ran last, and links it again on the next build of
# this tree, fresh or not: the copy kept here is the one to run.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
commit=$(grep -v '^#' "$ROOT/scripts/previous-release" | head -n 1)
target=${CARGO_TARGET_DIR:-$ROOT/target}
out=$target/previous-release/filegate-$commit
if [[ ! -x $out ]]; then
  if ! git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null; then
    git -C "$ROOT" fetch -q origin "$commit" || {
      echo "previous-release.sh: commit $commit is not in this clone and could not be fetched" >&2
      exit 1
    }
  fi
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  git -C "$ROOT" archive "$commit" | tar -x -C "$src"
  (cd "$src" && cargo fetch --locked >&2 && FILEGATE_GIT_COMMIT=${commit:0:12} CARGO_TARGET_DIR=$target cargo build --locked --bin filegate >&2)
  mkdir -p "$(dirname "$out")"
  cp "$target/debug/filegate" "$out.tmp"
  mv "$out.tmp" "$out"
fi
echo "$out"
