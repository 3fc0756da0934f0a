#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: install the Debian packages Keel needs
# (only those missing), then configure and build. Sourced, not executed.

KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEEL_ROOT

KEEL_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libboost1.81-all-dev libsqlitecpp-dev libsqlite3-dev libspdlog-dev catch2
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev
  ccache clang lld abigail-tools shellcheck wrk nginx-light procps curl util-linux
  libssl-dev openssl
  libnats-dev nats-server haproxy
  postgresql-15 libpq-dev
  chromium nodejs npm
  g++-mingw-w64-x86-64-posix
)
# Packages that only bring a program: skipped when the program is already on the PATH (a Node.js
# from elsewhere ships its own npm, which Debian's npm package would conflict with).
declare -A KEEL_PACKAGE_PROGRAM=([nodejs]=node [npm]=npm)

keel_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

keel_install_packages() {
  local missing=() pkg
  for pkg in "${KEEL_PACKAGES[@]}"; do
    if [ -n "${KEEL_PACKAGE_PROGRAM[$pkg]:-}" ] && command -v "${KEEL_PACKAGE_PROGRAM[$pkg]}" >/dev/null; then continue; fi
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    keel_log "all ${#KEEL_PACKAGES[@]} Debian packages present"
    return 0
  fi
  keel_log "installing missing Debian packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  # Packages such as nginx-light start their service on install; Keel only needs the binaries
  # (bench/ starts its own nginx), so service starts are refused during the install with the
  # standard policy-rc.d hook, unless the machine already has its own policy.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
  if [ "$added_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
  return "$status"
}

# keel_build BUILD_DIR BUILD_TYPE [extra cmake args...]
keel_build() {
  local dir="$1" type="$2"
  shift 2
  keel_log "configuring $dir ($type)"
  cmake -S "$KEEL_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@"
  keel_log "building $dir"
  cmake --build "$dir" --parallel "$(nproc)"
}
