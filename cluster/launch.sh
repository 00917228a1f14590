#!/usr/bin/env bash
# Start a Ray cluster only after the project's offline checks pass:
#
#   cluster/launch.sh [CLUSTER_YAML] [ray up options...]     (default: cluster/gcp.yaml)
#
# The checks (nisca/cluster_config.py: Ray's own validation plus the project's) refuse placeholders
# such as YOUR_GCP_PROJECT_ID and the mistakes Ray lets through until machines are being paid for;
# `ray up` itself has no dry-run mode. Python: $NISCA_PYTHON, else the repository's .venv, else python3.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="${1:-$repo/cluster/gcp.yaml}"
if [ $# -gt 0 ]; then shift; fi

python="${NISCA_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

"$python" -m nisca.cluster_config --for-launch "$config"

provider="$("$python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["provider"]["type"])' "$config")"
if [ "$provider" = gcp ] && ! "$python" -c 'import googleapiclient, google_auth_httplib2' 2>/dev/null; then
  echo "launch.sh: Ray's GCP provider needs Google's API client where \`ray up\` runs:" >&2
  echo '  pip install "google-api-python-client==2.202.0" "google-auth-httplib2==0.4.4"' >&2
  exit 2
fi
if ! command -v ray > /dev/null; then
  echo 'launch.sh: no `ray` on PATH: pip install "ray[default]==2.60.0"' >&2
  exit 2
fi

exec ray up "$config" "$@"
