#!/bin/sh
# The prod image's entrypoint (Dockerfile.dev's `prod` stage; docs/server.md,
# "Operating it"). Its arguments are the server's command line (the image's
# CMD); the database is $PS_DB.
#
# 1. As root: makes the database's directory and everything in it the service
#    user's (PS_RUN_AS, uid:gid; a Fly volume is mounted owned by root), then
#    runs itself again as that user, with no supplementary groups.
# 2. With LITESTREAM_BUCKET set: writes a Litestream config (no secrets in it:
#    Litestream reads LITESTREAM_ACCESS_KEY_ID and LITESTREAM_SECRET_ACCESS_KEY
#    from the environment itself), restores the database from the replica if
#    the file is missing and a replica exists, and runs the server under
#    `litestream replicate -exec`. Without it, runs the server directly.
#
# Optional: LITESTREAM_ENDPOINT (an S3-compatible service; path-style
# addressing), LITESTREAM_REGION, LITESTREAM_PATH (the replica's key prefix,
# default store.db), LITESTREAM_CONFIG (where the config goes; default a new
# temp file).
set -eu

: "${PS_DB:?PS_DB (the database file) must be set}"
run_as=${PS_RUN_AS:-10001:10001}
uid=${run_as%%:*}
gid=${run_as#*:}
data_dir=$(dirname "$PS_DB")

mkdir -p "$data_dir"
if [ "$(id -u)" = 0 ] && [ "$uid" != 0 ]; then
  # Only what is not the user's yet: a restart does not walk the volume again.
  find "$data_dir" \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
  exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$0" "$@"
fi

[ -w "$data_dir" ] || { echo "prod-entrypoint: $data_dir is not writable by uid $(id -u)" >&2; exit 1; }

if [ -z "${LITESTREAM_BUCKET:-}" ]; then
  exec "$@"
fi

# One YAML single-quoted scalar.
yaml() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
# One shell word, for -exec's command string.
word() { printf "'%s' " "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

config=${LITESTREAM_CONFIG:-$(mktemp "${TMPDIR:-/tmp}/litestream.XXXXXX")}
{
  echo "# Written by prod-entrypoint at start; see docs/server.md."
  echo "logging:"
  echo "  stderr: true"
  echo "dbs:"
  echo "  - path: $(yaml "$PS_DB")"
  echo "    replica:"
  echo "      type: s3"
  echo "      bucket: $(yaml "$LITESTREAM_BUCKET")"
  echo "      path: $(yaml "${LITESTREAM_PATH:-store.db}")"
  if [ -n "${LITESTREAM_ENDPOINT:-}" ]; then
    echo "      endpoint: $(yaml "$LITESTREAM_ENDPOINT")"
    echo "      force-path-style: true"
  fi
  if [ -n "${LITESTREAM_REGION:-}" ]; then
    echo "      region: $(yaml "$LITESTREAM_REGION")"
  fi
} >"$config"

# Both flags make this a no-op when the database is there or nothing was
# replicated yet; any other failure (the store unreachable) stops the start
# rather than begin a new, empty database.
# Its messages go to stderr: stdout is the server's (its listening lines).
litestream restore -config "$config" -no-expand-env -if-db-not-exists -if-replica-exists "$PS_DB" >&2

command=""
for arg in "$@"; do command="$command$(word "$arg")"; done
exec litestream replicate -config "$config" -no-expand-env -exec "$command"
