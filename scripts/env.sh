# Sourced by the scripts: installs what the build needs when it is missing (plus the Debian
# packages a script lists in BSFG_EXTRA_APT before sourcing this) and keeps one cargo target
# directory between runs (CI may point CARGO_TARGET_DIR elsewhere).
set -euo pipefail

need_apt=()
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
for pkg in "${BSFG_EXTRA_APT[@]:-}"; do
  [ -n "$pkg" ] && { dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg"); }
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "error: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bsfg/target}"
mkdir -p "$CARGO_TARGET_DIR"
# An explicit target keeps host-only build dependencies (bindgen for RocksDB's bindings) apart
# from target ones in every cargo command, so `cargo clippy` and `cargo build` share RocksDB's
# C++ build instead of compiling it twice. Binaries land in $BSFG_BIN_DIR/{debug,release}.
export CARGO_BUILD_TARGET="${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
export BSFG_BIN_DIR="$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET"
