#!/usr/bin/env bash
# The dependency tree's checks: cargo deny (licenses, duplicate versions, sources; advisories where the
# RustSec database can be fetched) and cargo machete (dependencies declared but unused). Installs both,
# pinned, once under $FILEGATE_TEST_TOOLS/cargo (a few minutes the first time). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${FILEGATE_TEST_TOOLS:-$HOME/.cache/filegate-test-tools}
BIN=$TOOLS/cargo/bin
export PATH=$BIN:$PATH
install() { # crate version
  if ! "$BIN/$1" --version 2>/dev/null | grep -q " $2"; then
    echo "installing $1 $2 (crates.io, once)..." >&2
    CARGO_TARGET_DIR=$TOOLS/cargo-target cargo install --quiet --locked --root "$TOOLS/cargo" "$1" --version "$2" >&2
    rm -rf "$TOOLS/cargo-target"
  fi
}
install cargo-deny 0.20.2
install cargo-machete 0.9.2

# `cargo deny` resolves the dependencies of every target (wasm, Android, Windows), not only this machine's,
# and `--offline` cannot fetch what a build here never downloaded: fetch them all first (the registry is
# reachable wherever the builds are), so that a fresh machine's cargo cache passes as a warm one does.
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
# RustSec's advisory database is a git repository on GitHub: checked where it can be fetched.
if timeout 60 cargo deny fetch db >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "cargo deny: advisories not checked (RustSec's database on GitHub cannot be fetched from here)" >&2
fi
cargo machete
