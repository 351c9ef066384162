#!/usr/bin/env bash
# Usage: genfoundry-workspace DIR [COMMAND...]
#
# Make DIR a current checkout of the genfoundry repository with its DVC-tracked inputs, run COMMAND in
# it, then push new DVC outputs. DIR is on the shared volume, so every Ray pod sees the same files.
#   1. clone $GENFOUNDRY_GIT_URL into DIR (first run) or fast-forward it to $GENFOUNDRY_GIT_REF (default
#      main). Uncommitted dvc.lock changes from earlier runs are kept: a pull that would overwrite them
#      fails instead (commit dvc.lock upstream, or `git -C DIR checkout dvc.lock` to drop them);
#   2. use $GENFOUNDRY_DVC_CACHE (if set) as the DVC cache, shared by every workspace on the volume;
#   3. `dvc pull` from the DVC remote, run COMMAND, and `dvc push` once it succeeds (both only when the
#      repository configures a remote). The exit status is COMMAND's, or that of the step that failed.
set -euo pipefail

dir=${1:?"usage: genfoundry-workspace DIR [COMMAND...]"}
shift
: "${GENFOUNDRY_GIT_URL:?expected GENFOUNDRY_GIT_URL (the repository to clone), got nothing}"
ref=${GENFOUNDRY_GIT_REF:-main}

if [[ -d "$dir/.git" ]]; then
  git -C "$dir" pull --ff-only origin "$ref"
else
  git clone --branch "$ref" "$GENFOUNDRY_GIT_URL" "$dir"
fi
cd "$dir"

if [[ -n "${GENFOUNDRY_DVC_CACHE:-}" ]]; then
  dvc cache dir --local "$GENFOUNDRY_DVC_CACHE"
fi
remotes=$(dvc remote list)
if [[ -n "$remotes" ]]; then
  dvc pull --allow-missing
fi
if (($#)); then
  "$@"
fi
if [[ -n "$remotes" ]]; then
  dvc push
fi
