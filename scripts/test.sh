#!/usr/bin/env bash
# Runs every test filegate has: Rust unit and integration tests, then the official-SDK conformance suites
# (google-genai for Python, @google/genai for Node) against a real server.
#
#   scripts/test.sh            everything
#   scripts/test.sh rust       only cargo test
#   scripts/test.sh sdk        only the SDK suites (and Google's curl walk-through)
#   scripts/test.sh fuzz       only the OpenAPI fuzzer (schemathesis)
#
# Installs what the suites need once (nginx for the import tests, from ../shared/scripts; a Python venv
# and node_modules, cached under ~/.cache/filegate), then runs the tests in a network namespace with only
# loopback when the machine allows it (root and unshare), so no test can reach beyond 127.0.0.1 even by
# mistake.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
VENV=""
FUZZ_VENV=""
CACHE=${FILEGATE_CACHE:-$HOME/.cache/filegate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
mkdir -p "$CACHE"

step() { printf '\n==> %s\n' "$*" >&2; }

# --- install (needs the package registries) -------------------------------------------------------
export FILEGATE_SHARED_SCRIPTS=${FILEGATE_SHARED_SCRIPTS:-$(cd "$ROOT/.." && pwd)/shared/scripts}
[[ -x $FILEGATE_SHARED_SCRIPTS/start-http-source.sh || -f $FILEGATE_SHARED_SCRIPTS/start-http-source.sh ]] \
  || { echo "missing $FILEGATE_SHARED_SCRIPTS/start-http-source.sh (set FILEGATE_SHARED_SCRIPTS)" >&2; exit 1; }
if [[ $WHAT == all || $WHAT == rust ]] && ! command -v nginx >/dev/null; then
  step "installing nginx (import test source)"
  tmp=$(mktemp -d) && bash "$FILEGATE_SHARED_SCRIPTS/start-http-source.sh" "$tmp" >/dev/null && bash "$tmp/stop.sh"
  rm -rf "$tmp"
fi
step "building filegate and its tests"
cargo build --locked --all-targets
for tool in jq file; do
  command -v $tool >/dev/null || { step "installing $tool"; apt-get install -y -q $tool >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q $tool >/dev/null; }; }
done
if [[ $WHAT == all || $WHAT == sdk ]]; then
  step "installing the Python SDK suite (google-genai, pinned)"
  VENV=$CACHE/venv-$(sha256sum conformance/python/requirements.txt | cut -c1-12)
  [[ -x $VENV/bin/pytest ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r conformance/python/requirements.txt; }
  step "installing the Node SDK suite (@google/genai, pinned)"
  (cd conformance/node && npm ci --no-audit --no-fund --loglevel=error --cache "$CACHE/npm")
fi
if [[ $WHAT == all || $WHAT == fuzz ]]; then
  step "installing the OpenAPI fuzzer (schemathesis, pinned)"
  FUZZ_VENV=$CACHE/fuzz-$(sha256sum conformance/fuzz/requirements.txt | cut -c1-12)
  [[ -x $FUZZ_VENV/bin/schemathesis ]] || { python3 -m venv "$FUZZ_VENV" && "$FUZZ_VENV/bin/pip" install -q -r conformance/fuzz/requirements.txt; }
fi

# --- run (loopback only) --------------------------------------------------------------------------
run_tests() {
  export FILEGATE_BIN=$CARGO_TARGET_DIR/debug/filegate
  if [[ $WHAT == all || $WHAT == rust ]]; then
    step "cargo test"
    cargo test --locked --offline
  fi
  if [[ $WHAT == all || $WHAT == sdk ]]; then
    step "Python SDK conformance (google-genai)"
    (cd conformance/python && "$VENV/bin/pytest" -q -p no:cacheprovider)
    step "Node SDK conformance (@google/genai)"
    (cd conformance/node && npm test --silent)
  fi
  if [[ $WHAT == all || $WHAT == fuzz ]]; then
    step "OpenAPI fuzzing (schemathesis against GET /openapi.json)"
    conformance/fuzz/run.sh "$FUZZ_VENV/bin/schemathesis" "$FILEGATE_BIN"
  fi
}

# A plain network namespace (not a user namespace: nginx's workers switch to `nobody`, which must exist).
if [[ ${FILEGATE_TEST_NETNS:-auto} != off ]] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  step "running tests in a network namespace with only loopback"
  export -f run_tests step
  export WHAT VENV FUZZ_VENV ROOT
  unshare -n bash -c 'set -euo pipefail; ip link set lo up; run_tests'
else
  step "running tests without a network namespace (unshare -n is not permitted here)"
  run_tests
fi
step "all tests passed"
