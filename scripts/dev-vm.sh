#!/usr/bin/env bash
# Create, deploy, reach, resize and destroy the dev VM on Fly.io (fly.dev.toml,
# Dockerfile.dev's `dev` image). The loop is described in docs/dev-vm.md.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=fly.dev.toml
VOLUME=sharerig_data

usage() {
  cat <<EOF
Usage: scripts/dev-vm.sh [--app NAME] [--region REGION] [--org ORG] COMMAND [ARGS]

Commands:
  create          create the app, its $VOLUME volume and the shared secret
                  (PS_SHARED_SECRET from the environment, else a generated one,
                  printed once); then run 'deploy'
  deploy          build Dockerfile.dev (target dev) on Fly's builder and start
                  the VM (256 MB, shared-cpu-1x, as in $CONFIG)
  ssh [CMD...]    a shell on the VM, or run CMD there
  resize MB       set the VM's memory: 1024 to rebuild on the VM, 256 to run a
                  repro (the VM restarts; /data stays)
  status          the app's machines and checks
  destroy         delete the app with its VM and volume (asks first)

Options:
  --app NAME      the Fly app (default: 'app' in $CONFIG; app names are global on Fly)
  --region CODE   where to put the volume and VM (default: primary_region in $CONFIG)
  --org SLUG      the organisation for 'create' (default: flyctl asks)
  -h, --help      this help

Needs flyctl (https://fly.io/docs/flyctl/install/) and 'fly auth login' once.
EOF
}

die() { echo "dev-vm: $*" >&2; exit 1; }

# flyctl installs itself as both `fly` and `flyctl`.
fly_bin() {
  if command -v fly >/dev/null; then echo fly
  elif command -v flyctl >/dev/null; then echo flyctl
  else
    echo "dev-vm: needs flyctl: curl -L https://fly.io/install.sh | sh (see https://fly.io/docs/flyctl/install/), then 'fly auth login'" >&2
    exit 2
  fi
}

# A top-level string key of fly.dev.toml (`app`, `primary_region`).
config_value() {
  sed -nE "s/^$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" "$CONFIG" | head -n 1
}

app="" region="" org=""
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=${2:?--app needs a name}; shift 2 ;;
    --region) region=${2:?--region needs a region code}; shift 2 ;;
    --org) org=${2:?--org needs an organisation slug}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { usage >&2; exit 2; }
command=$1
shift
app=${app:-$(config_value app)}
region=${region:-$(config_value primary_region)}
[ -n "$app" ] || die "no app name: pass --app NAME"

FLY=$(fly_bin)
fly_app() { "$FLY" "$@" --app "$app" --config "$CONFIG"; }

case "$command" in
  create)
    args=(apps create "$app")
    [ -z "$org" ] || args+=(--org "$org")
    "$FLY" "${args[@]}"
    # 10 GB: three 618 MB uploads in SQLite, run directories, and the on-VM
    # workspace (source and release target, about 4 GB).
    fly_app volumes create "$VOLUME" --size 10 --region "$region" --yes
    if [ -n "${PS_SHARED_SECRET:-}" ]; then
      secret=$PS_SHARED_SECRET
      echo "dev-vm: using PS_SHARED_SECRET from the environment"
    else
      secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
      echo "dev-vm: generated shared secret (shown once; keep it): $secret"
    fi
    # On stdin, not the command line, where other users could read it.
    printf 'PS_SHARED_SECRET=%s\n' "$secret" | fly_app secrets import --stage
    echo "dev-vm: created $app; next: scripts/dev-vm.sh --app $app deploy"
    ;;
  deploy)
    fly_app deploy --ha=false "$@"
    ;;
  ssh)
    if [ $# -gt 0 ]; then fly_app ssh console -C "$*"; else fly_app ssh console; fi
    ;;
  resize)
    mb=${1:-}
    [[ $mb =~ ^[0-9]+$ ]] || die "resize needs a size in MB (256 for repros, 1024 for builds)"
    fly_app scale memory "$mb"
    ;;
  status)
    fly_app status
    fly_app checks list
    ;;
  destroy)
    # flyctl asks for confirmation unless --yes is passed through.
    "$FLY" apps destroy "$app" "$@"
    ;;
  *)
    usage >&2
    die "unknown command $command"
    ;;
esac
