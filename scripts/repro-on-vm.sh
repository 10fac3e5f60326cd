#!/usr/bin/env bash
# Run a scenario on the dev VM in `machine` mode (the whole 256 MB VM is the
# limit) and copy its run directory back into runs/. On the VM,
# `sharerig-dev repro` stops the resident server for the run and starts it
# again afterwards. See docs/dev-vm.md.
set -euo pipefail

# Paths given by the user stay relative to where it was called from.
CONFIG="$(cd "$(dirname "$0")/.." && pwd)/fly.dev.toml"

usage() {
  cat <<EOF
Usage: scripts/repro-on-vm.sh [--app NAME] [--runs-dir DIR] SCENARIO.toml

  SCENARIO.toml   a scenario with [machine] mode = "machine"
                  (e.g. scenarios/parallel-uploads-vm.toml)
  --app NAME      the Fly app (default: 'app' in fly.dev.toml)
  --runs-dir DIR  where the run directory is copied (default: runs)

Exit status: 0 the run passed, 1 it failed (OOM kill, a phase failed), 2 it
could not run. Then: cargo run --release --bin rig -- report DIR
EOF
}

die() { echo "repro-on-vm: $*" >&2; exit 2; }

app="" runs_dir=runs
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=${2:?--app needs a name}; shift 2 ;;
    --runs-dir) runs_dir=${2:?--runs-dir needs a directory}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { usage >&2; exit 2; }
scenario=$1
[ -f "$scenario" ] || die "no scenario file $scenario"

if command -v fly >/dev/null; then FLY=fly
elif command -v flyctl >/dev/null; then FLY=flyctl
else die "needs flyctl: curl -L https://fly.io/install.sh | sh (https://fly.io/docs/flyctl/install/), then 'fly auth login'"
fi
command -v python3 >/dev/null || die "needs python3 (3.11 or later) to read the scenario: apt-get install -y python3"

# A cgroup-mode scenario would measure a cgroup inside the VM, not the VM.
mode=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("machine", {}).get("mode", "cgroup"))' "$scenario") ||
  die "$scenario is not valid TOML"
[ "$mode" = machine ] ||
  die "$scenario has [machine] mode = \"$mode\"; on the VM use mode = \"machine\" (see scenarios/parallel-uploads-vm.toml)"

app_args=(--config "$CONFIG")
[ -z "$app" ] || app_args+=(--app "$app")
fly_app() { "$FLY" "$@" "${app_args[@]}"; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
remote="/data/scenarios/$(basename "$scenario" .toml)-$stamp.toml"
fly_app ssh console -C "mkdir -p /data/scenarios"
fly_app ssh sftp put "$scenario" "$remote"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "repro-on-vm: running $remote on the VM (the resident server is stopped meanwhile)"
fly_app ssh console -C "sharerig-dev repro $remote" | tee "$log" || true
run_dir=$(sed -n 's/^run-dir: //p' "$log" | tr -d '\r' | tail -n 1)
[ -n "$run_dir" ] || die "the VM printed no run directory: the rig could not run it (see above)"

mkdir -p "$runs_dir"
local_dir="$runs_dir/$(basename "$run_dir")"
fly_app ssh sftp get -R "$run_dir" "$local_dir"
echo "repro-on-vm: copied to $local_dir"
passed=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["passed"])' "$local_dir/outcome.json")
[ "$passed" = True ] || { echo "repro-on-vm: the run FAILED (see $local_dir/outcome.json)"; exit 1; }
echo "repro-on-vm: the run passed"
