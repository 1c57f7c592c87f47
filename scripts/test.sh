#!/usr/bin/env bash
# Runs every test filegate has, with cargo-nextest: Rust unit tests (the metadata store's contract on SQLite
# and PostgreSQL), then the integration tests against the real binary and the official-SDK conformance
# suites (google-genai for Python with Google's curl walk-through, @google/genai for Node, openai for
# Python and Node; model calls go to the fake of Google's services in tests/fakes/google.py), then the container
# image and the OpenAPI fuzzer.
#
#   configuration        metadata     bytes
#   sqlite-local         SQLite       local disk          (the default deployment)
#   postgres-local       PostgreSQL   local disk
#   postgres-s3          PostgreSQL   S3 (moto)           (the multi-node deployment; two-node tests run here)
#   sqlite-azure         SQLite       Azure Blob (Azurite)
#   sqlite-gcs           SQLite       GCS (the fake of Google's services, tests/fakes/google.py)
#
# The first configuration listed runs every integration test that can run there; the others run the tests
# whose outcome depends on where metadata and bytes are (STORAGE_SENSITIVE below), and each test runs only
# where it can (two nodes need PostgreSQL and a bucket). nextest reports what a configuration leaves out
# as skipped; a test that would skip itself fails instead (FILEGATE_TEST_STRICT). The SDK suites run on
# sqlite-local, postgres-s3 and sqlite-gcs (where files reach Vertex by gs:// URI).
#
#   scripts/test.sh            everything
#   scripts/test.sh rust       only the Rust tests
#   scripts/test.sh sdk        only the SDK suites
#   scripts/test.sh fuzz       only the OpenAPI fuzzer (schemathesis)
#   scripts/test.sh console    only the web console, driven in headless Chromium (Debian's chromium and
#                              chromium-driver, installed once; Selenium from the Python venv)
#   scripts/test.sh helm       only the Helm chart (deploy/helm/filegate), rendered and validated offline
#   scripts/test.sh image      only the container image (scripts/image.sh, run from its root file system in a
#                              chroot, driven by google-genai) and deploy/compose.yaml
#   FILEGATE_TEST_CONFIGS="sqlite-local postgres-s3" scripts/test.sh     some configurations only
#
# Installs what the suites need once (nginx, PostgreSQL, moto and Azurite through scripts/services, jq,
# file and script; a Python venv and node_modules, cached under ~/.cache), then runs the tests in a network
# namespace with only loopback when the machine allows it (root and unshare), so no test can reach beyond 127.0.0.1
# even by mistake. The namespace has its own mounts too, so fault tests may mount small filesystems.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
CONFIGS=${FILEGATE_TEST_CONFIGS:-sqlite-local postgres-local postgres-s3 sqlite-azure sqlite-gcs}
VENV=""
FUZZ_VENV=""
HELM_VENV=""
CACHE=${FILEGATE_CACHE:-$HOME/.cache/filegate}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
mkdir -p "$CACHE"

step() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)" >&2; }
wants() { [[ $WHAT == all || $WHAT == "$1" ]]; }
needs() { [[ $WHAT != fuzz && $WHAT != image && $WHAT != console && $WHAT != helm && " $CONFIGS " == *"$1"* ]]; }
apt_install() {
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null; apt-get install -y -q "$@" >/dev/null; }
}
SERVICES=$ROOT/scripts/services
# Starts a test service once, outside the namespace, so that it installs itself; then stops it.
install_with() {
  local tmp
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  bash "$SERVICES/$1" "$tmp/x" >/dev/null && bash "$tmp/x/stop.sh"
  rm -rf "$tmp"
}

# --- install (needs the package registries) -------------------------------------------------------
if (wants rust || wants sdk) && ! command -v nginx >/dev/null; then
  step "installing nginx (import test source)"; install_with nginx.sh
fi
if needs postgres && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  step "installing PostgreSQL"; install_with postgres.sh
fi
TOOLS=${FILEGATE_TEST_TOOLS:-$HOME/.cache/filegate-test-tools}
if needs s3 && [[ ! -x $TOOLS/venv/bin/moto_server ]]; then
  step "installing moto (S3)"; install_with s3.sh
fi
if needs azure && [[ ! -x $TOOLS/npm/node_modules/.bin/azurite-blob ]]; then
  step "installing Azurite (Azure Blob)"; install_with azurite.sh
fi
for tool in jq file; do
  command -v $tool >/dev/null || { step "installing $tool"; apt_install $tool; }
done
# `script` gives the CLI's progress bars a pseudo-terminal (tests/integration/cli.rs).
command -v script >/dev/null || { step "installing script (bsdutils)"; apt_install bsdutils; }
# systemd-analyze verifies deploy/systemd/filegate.service (tests/integration/ops.rs).
command -v systemd-analyze >/dev/null || { step "installing systemd-analyze (systemd)"; apt_install systemd; }
command -v cargo-nextest >/dev/null || cargo nextest --version >/dev/null 2>&1 || {
  step "installing cargo-nextest (crates.io, once)"
  cargo install --quiet --locked cargo-nextest
}
step "building filegate and its tests"
cargo build --locked --all-targets
if wants console && ! { command -v chromedriver && command -v chromium; } >/dev/null; then
  step "installing Chromium and its driver (Debian's chromium, chromium-driver)"; apt_install chromium chromium-driver
fi
if wants sdk || wants image || wants console; then
  step "installing the Python SDK suite (google-genai, pinned)"
  VENV=$CACHE/venv-$(sha256sum conformance/python/requirements.txt | cut -c1-12)
  [[ -x $VENV/bin/pytest ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q -r conformance/python/requirements.txt; }
  if wants sdk; then
    step "installing the Node SDK suite (@google/genai and openai, pinned)"
    (cd conformance/node && npm ci --no-audit --no-fund --loglevel=error --cache "$CACHE/npm")
  fi
fi
if wants image; then
  step "building the container image (scripts/image.sh: a static release build, no registry)"
  scripts/image.sh >/dev/null
fi
if wants helm; then
  step "installing the chart's test (Helm's engine from helm-python-sdk, kubernetes-validate; pinned)"
  HELM_VENV=$CACHE/helm-$(sha256sum conformance/helm/requirements.txt | cut -c1-12)
  [[ -x $HELM_VENV/bin/pytest ]] \
    || { python3 -m venv "$HELM_VENV" && "$HELM_VENV/bin/pip" install -q -r conformance/helm/requirements.txt; }
fi
if wants fuzz; then
  step "installing the OpenAPI fuzzer (schemathesis, pinned)"
  FUZZ_VENV=$CACHE/fuzz-$(sha256sum conformance/fuzz/requirements.txt | cut -c1-12)
  [[ -x $FUZZ_VENV/bin/schemathesis ]] \
    || { python3 -m venv "$FUZZ_VENV" && "$FUZZ_VENV/bin/pip" install -q -r conformance/fuzz/requirements.txt; }
fi

# --- run (loopback only) --------------------------------------------------------------------------
# A fresh PostgreSQL database for one SDK suite's server.
sdk_database() {
  local name="fg_sdk_$1_$$"
  psql "$FILEGATE_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
  echo "${FILEGATE_TEST_POSTGRES_URL%/*}/$name"
}

# The SDK suites against a server of configuration $1 (each suite starts its own server).
# Where the SDK suites run: the default deployment, the multi-node one, and Cloud Storage (gs:// routing).
SDK_CONFIGS="sqlite-local postgres-s3 sqlite-gcs"
run_sdk_suites() {
  local suite engine=${1%-*} store=${1#*-}
  for suite in python node; do
    (
      [[ $engine == postgres ]] && { FILEGATE_DATABASE_URL=$(sdk_database "$suite"); export FILEGATE_DATABASE_URL; }
      case $store in
        s3) export FILEGATE_BLOB_STORE=s3://$AWS_BUCKET/sdk-$suite-$$ ;;
        azure) export FILEGATE_BLOB_STORE=az://$AZURE_CONTAINER_NAME/sdk-$suite-$$ ;;
        gcs) export FILEGATE_BLOB_STORE=gs://sdk-files/sdk-$suite-$$ GOOGLE_SERVICE_ACCOUNT=$FAKE_GCS_ACCOUNT ;;
      esac
      if [[ $suite == python ]]; then
        step "Python SDK conformance (google-genai, openai, Google's curl walk-through) on $1"
        cd conformance/python && "$VENV/bin/pytest" -q -p no:cacheprovider --durations=5
      else
        step "Node SDK conformance (@google/genai, openai) on $1"
        cd conformance/node && npm test --silent
      fi
    )
  done
}

# Integration tests whose outcome depends on the metadata engine or the blob store: run on every store.
STORAGE_SENSITIVE='test(/^(uploads|files|fsck|lifecycle|imports|migrate|auth|nodes|model|caches|batches|openai_files)::/) | test(/^chaos::(postgres|s3|two_nodes)_/) | test(/^faults::postgres_/)'
# The nextest filter of configuration $1 ($2: the first one listed, which runs every test it can).
integration_filter() {
  local engine=${1%-*} store=${1#*-} filter='all()'
  [[ $engine == postgres && $store != local ]] || filter="$filter - test(/^nodes::/)"
  [[ $engine == postgres ]] || filter="$filter - test(/^faults::postgres_/)"
  # The network-fault tests need their dependency behind a proxy: PostgreSQL (once, on local disk) or S3.
  [[ $engine == postgres && $store == local ]] || filter="$filter - test(/^chaos::postgres_/)"
  [[ $store == s3 ]] || filter="$filter - test(/^chaos::s3_/)"
  [[ $engine == postgres && $store == s3 ]] || filter="$filter - test(/^chaos::two_nodes_/)"
  # A rolling upgrade is a deployment of several nodes: one PostgreSQL, one bucket.
  [[ $engine == postgres && $store == s3 ]] || filter="$filter - test(/^upgrade::/)"
  [[ $1 == "$2" ]] || filter="($filter) & ($STORAGE_SENSITIVE)"
  echo "$filter"
}

run_tests() {
  export FILEGATE_BIN=$CARGO_TARGET_DIR/debug/filegate
  local scratch config
  scratch=$(mktemp -d) && chmod 755 "$scratch"
  trap 'for s in '"$scratch"'/*/stop.sh; do [[ -f $s ]] && bash "$s"; done; rm -rf '"$scratch" EXIT
  # What this run provides: the metadata and blob contracts fail, rather than skip, when one is missing.
  # The fake of Cloud Storage needs only python3: the blob contract always runs on it.
  FILEGATE_TEST_EXPECT="gcs"
  for service in postgres s3 azure; do
    needs "$service" && FILEGATE_TEST_EXPECT="$FILEGATE_TEST_EXPECT $service"
  done
  export FILEGATE_TEST_EXPECT
  if needs postgres; then
    step "starting PostgreSQL on loopback"
    FILEGATE_TEST_POSTGRES_URL=$(bash "$SERVICES/postgres.sh" "$scratch/pg" | tail -n 1)
    export FILEGATE_TEST_POSTGRES_URL
  fi
  if needs s3; then
    step "starting moto (S3) on loopback"
    bash "$SERVICES/s3.sh" "$scratch/s3" >/dev/null
    # shellcheck disable=SC1091
    source "$scratch/s3/env"
  fi
  if needs azure; then
    step "starting Azurite (Azure Blob) on loopback"
    bash "$SERVICES/azurite.sh" "$scratch/azure" >/dev/null
    # shellcheck disable=SC1091
    source "$scratch/azure/env"
  fi
  if needs gcs && wants sdk; then
    step "starting the fake of Cloud Storage on loopback (for the SDK suites)"
    mkdir -p "$scratch/gcs"
    python3 tests/fakes/google.py --parent-pid $$ >"$scratch/gcs/url" &
    echo "kill $!" >"$scratch/gcs/stop.sh"
    until [[ -s $scratch/gcs/url ]]; do sleep 0.1; done
    FAKE_GCS_ACCOUNT=$scratch/gcs/account.json
    printf '{"private_key": "unused", "private_key_id": "unused", "client_email": "t@example.invalid", "disable_oauth": true, "gcs_base_url": "%s/gcs"}' \
      "$(awk '{print $3}' "$scratch/gcs/url")" >"$FAKE_GCS_ACCOUNT"
    export FAKE_GCS_ACCOUNT
  fi
  if wants rust && [[ " $CONFIGS " == *" postgres-s3 "* ]]; then
    step "the previous release's binary (scripts/previous-release), for the rolling-upgrade test"
    FILEGATE_TEST_PREVIOUS_BINARY=$(bash "$ROOT/scripts/previous-release.sh")
    export FILEGATE_TEST_PREVIOUS_BINARY
  fi
  if wants rust; then
    step "unit tests, the metadata contract (on every engine), the blob contract (on every store), the architecture"
    FILEGATE_TEST_GCS=1 cargo nextest run --locked --offline --lib --test architecture
  fi
  local first=${CONFIGS%% *}
  for config in $CONFIGS; do
    local engine=${config%-*} store=${config#*-}
    if wants rust; then
      local filter
      filter=$(integration_filter "$config" "$first")
      step "integration tests on $config: $filter"
      FILEGATE_TEST_DATABASE=$engine FILEGATE_TEST_BLOBS=$store FILEGATE_TEST_STRICT=1 \
        cargo nextest run --locked --offline --test integration -E "$filter"
    fi
    if wants sdk && [[ " $SDK_CONFIGS " == *" $config "* ]]; then
      run_sdk_suites "$config"
    fi
  done
  if wants console; then
    step "the web console in headless Chromium (screenshots in docs/console)"
    "$VENV/bin/pytest" -q -p no:cacheprovider conformance/console
  fi
  if wants helm; then
    step "the Helm chart: linted, rendered with each values file, validated against Kubernetes' schemas"
    "$HELM_VENV/bin/pytest" -q -p no:cacheprovider conformance/helm
  fi
  if wants image; then
    step "the container image, run from its root file system as its user; deploy/compose.yaml"
    "$VENV/bin/pytest" -q -p no:cacheprovider conformance/image
  fi
  if wants fuzz; then
    step "OpenAPI fuzzing (schemathesis against GET /openapi.json)"
    conformance/fuzz/run.sh "$FUZZ_VENV/bin/schemathesis" "$FILEGATE_BIN"
  fi
}

# A plain network namespace (not a user namespace: nginx's and PostgreSQL's processes switch users, which
# must exist), with private mounts.
if [[ ${FILEGATE_TEST_NETNS:-auto} != off ]] && command -v ip >/dev/null && unshare -n -m true 2>/dev/null; then
  step "running tests in a network namespace with only loopback"
  export -f run_tests run_sdk_suites sdk_database step wants needs integration_filter
  export WHAT CONFIGS VENV FUZZ_VENV HELM_VENV ROOT SERVICES SDK_CONFIGS STORAGE_SENSITIVE
  unshare -n -m bash -c 'set -euo pipefail; ip link set lo up; run_tests'
else
  step "running tests without a network namespace (unshare -n -m is not permitted here)"
  run_tests
fi
step "all tests passed"
