#!/usr/bin/env bash
# The main job on the local lab, the way the product's docs advise running it
# in production: check every node, fill the cache node while the cluster
# runs, then upgrade from the cache with no internet, here through a crash
# and a resume; all the while the apps serve real requests through the load
# balancer and the routers, and at the end we count what their users saw.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin} # where make build put sentinel and sentinel-lab
case $BIN in /*) ;; *) BIN=$PWD/$BIN ;; esac
PATH="$BIN:$PATH"

LAB=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-demo.XXXXXX")
TRAFFIC=
stop_traffic() { if [ -n "$TRAFFIC" ]; then kill -INT "$TRAFFIC" 2>/dev/null; wait "$TRAFFIC" || true; TRAFFIC=; fi; }
trap 'stop_traffic; sentinel-lab down --dir "$LAB"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "bring up the docs' cluster with a load balancer and two routers (core and router-2; data services; three DEAs) on 3.4.1, the core node also the cache node; its apps live: instances are processes on the DEAs, the routers proxies, nginx in front of them"
eval "$(sentinel-lab up --dir "$LAB" --layout seven --release 3.4.1 --live | tee /dev/stderr)"

step "the channel, as its publisher keeps it (a TUF repository; keys in $LAB/keys, outside what is served): refresh its timestamp, then verify it from the operator's anchor as a cluster would"
sentinel channel timestamp --keys "$LAB/keys" "$LAB/upstream"
sentinel channel verify --metadata-only --root "$LAB/trust-root.json" "$LAB/upstream"

step "traffic: a request to every app every 10 ms through the load balancer, from now until the end"
sentinel-lab traffic --dir "$LAB" >"$LAB/traffic.txt" 2>&1 &
TRAFFIC=$!

step "fill the cache node while the cluster runs (the cluster file names it, so preflight and the run read the channel from it): sentinel upgrade 3.4.2 --download-only --cache-ip $SENTINEL_CACHE_IP"
sentinel upgrade 3.4.2 --download-only --cache-ip "$SENTINEL_CACHE_IP"
sentinel cache ls --dir "$LAB/nodes/core/var/sentinel-cache"

step "sentinel preflight 3.4.2: every node checked, nothing changes"
sentinel preflight 3.4.2

step "sentinel upgrade 3.4.2 --dry-run: the plan, the order of the nodes and the downtime by role; nothing changes"
sentinel upgrade 3.4.2 --dry-run | tail -n 14

step "the internet goes away: stop the upstream"
sentinel-lab upstream stop --dir "$LAB"

step "sentinel upgrade 3.4.2 --cache-ip, killed with kill -9 once the core node has switched postgresql to 3.4.2"
# A real SIGKILL from outside, at a point the run's own output shows: the
# crash hooks of the test builds are not in this binary (make build).
mkfifo "$LAB/upgrade.out"
sentinel upgrade 3.4.2 --cache-ip "$SENTINEL_CACHE_IP" --yes >"$LAB/upgrade.out" 2>&1 &
pid=$!
killed=
while IFS= read -r line; do
	printf '%s\n' "$line"
	case $line in
	"[core] 3.4.2/postgresql/switch"*" ok "*)
		kill -KILL "$pid"
		killed=1
		break
		;;
	esac
done <"$LAB/upgrade.out"
set +e
wait "$pid"
status=$?
set -e
if [ -z "$killed" ]; then
	echo "demo: the upgrade ended (exit status $status) before the core node switched postgresql: nothing was killed" >&2
	exit 1
fi
echo "exit status $status (killed by SIGKILL)"

step "a plain upgrade refuses: the run is unfinished"
sentinel upgrade 3.4.2 --yes || echo "exit status $?"

step "sentinel status: where it stopped (its exit status says so too: 75, interrupted)"
sentinel status || echo "exit status $?"

step "sentinel upgrade --resume finishes it, from the cache, still without upstream"
sentinel upgrade --resume

step "sentinel status: every node on 3.4.2"
sentinel status | sed -n 1,10p

step "the internet is back: sentinel upgrade 3.4.3 --max-in-flight 2 goes on from 3.4.2, straight from the upstream (--no-cache: the cache node holds 3.4.2 only), two nodes at a time where no redundant role goes down"
sentinel-lab upstream start --dir "$LAB"
sentinel upgrade 3.4.3 --no-cache --dry-run --max-in-flight 2 | sed -n '/^Schedule/,/^$/p'
sentinel upgrade 3.4.3 --no-cache --yes --max-in-flight 2 >/dev/null
sentinel status | sed -n 1,10p

step "the command line of every run is logged for manual recovery"
grep -h 'Running with command' "$LAB"/nodes/core/logs/sentinel-cli.log

step "what the apps' users saw during all of the above (shop, blog, api: two or more instances; cron: deliberately one)"
stop_traffic
cat "$LAB/traffic.txt"
if grep -q '^FAILED' "$LAB/traffic.txt"; then exit 1; fi
