#!/usr/bin/env bash
# The console's browser test (ctest "console.browser"; docs/testing.md): installs tests/console's
# locked npm packages (playwright-core alone) into BUILD_DIR/console-npm, once per lockfile and
# Node version, then runs console.test.mjs against the real keel with Debian's Chromium.
# Screenshots of each main view go to BUILD_DIR/console-screenshots.
#   tests/console/run.sh BUILD_DIR KEEL_BINARY
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
keel=$(realpath "$2")
for program in node npm chromium; do
  if ! command -v "$program" >/dev/null; then
    echo "console test: '$program' not found; apt-get install -y chromium nodejs npm (scripts/test.sh does)" >&2
    exit 1
  fi
done
key=$(cat "$here/package-lock.json" <(node --version) | sha256sum | cut -c1-16)
modules=$build/console-npm/$key
if [ ! -d "$modules/node_modules/playwright-core" ]; then
  rm -rf "$build/console-npm"
  mkdir -p "$modules.tmp"
  cp "$here/package.json" "$here/package-lock.json" "$modules.tmp/"
  # --ignore-scripts: playwright-core has no install step, and no browser is ever downloaded.
  if ! (cd "$modules.tmp" && timeout 600 npm ci --no-audit --no-fund --ignore-scripts) >"$build/console-npm.log" 2>&1; then
    tail -n 20 "$build/console-npm.log" >&2
    echo "console test: npm ci of tests/console failed (log $build/console-npm.log); the npm registry is needed once" >&2
    exit 1
  fi
  mv "$modules.tmp" "$modules"
fi
export KEEL_CHROMIUM
KEEL_CHROMIUM=$(command -v chromium)
exec node "$here/console.test.mjs" --keel "$keel" --modules "$modules/node_modules" --plugins "$build/plugins" \
  --fixtures "$build/fixtures" --out "$build/console-screenshots"
