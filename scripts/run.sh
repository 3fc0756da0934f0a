#!/usr/bin/env bash
# Command (1): install what is missing, build Release, and run keel on config/keel.toml with the
# example plugins. Extra arguments go to `keel serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

keel_install_packages
keel_build "$KEEL_ROOT/build" Release
config="$KEEL_ROOT/config/keel.toml"
listen="$(sed -n 's/^listen *= *"\(.*\)".*/\1/p' "$config" | head -n 1)"
keel_log "starting keel: http://${listen:-127.0.0.1:8080}/  (Ctrl-C stops it)"
exec "$KEEL_ROOT/build/bin/keel" serve --config "$config" "$@"
