#!/usr/bin/env bash
# The main job on the local lab: a one-node micro cloud on 3.4.1 goes to
# 3.4.2 through a crash and a resume, then on to 3.4.3.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"

LAB=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-demo.XXXXXX")
trap 'sentinel-lab down --dir "$LAB"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "bring up a one-node lab (every role) on 3.4.1"
eval "$(sentinel-lab up --dir "$LAB" --nodes 1 --release 3.4.1 | tee /dev/stderr)"

step "sentinel upgrade 3.4.2 --dry-run: the plan, nothing changes"
sentinel upgrade 3.4.2 --dry-run

step "sentinel upgrade 3.4.2, killed with SIGKILL after journal record 70 (test hook)"
set +e
SENTINEL_CRASH_AFTER_RECORD=70 sentinel upgrade 3.4.2 --yes
echo "exit status $? (killed)"
set -e

step "a plain upgrade refuses: the run is unfinished"
sentinel upgrade 3.4.2 --yes || echo "exit status $?"

step "sentinel status: where it stopped"
sentinel status

step "sentinel upgrade --resume finishes it"
sentinel upgrade --resume

step "sentinel status: every component on 3.4.2"
sentinel status

step "sentinel upgrade 3.4.3 goes on from 3.4.2"
sentinel upgrade 3.4.3 --yes >/dev/null
sentinel status

step "the command line of every run is logged for manual recovery"
grep -h 'Running with command' "$LAB"/nodes/core/logs/sentinel-cli.log
