#!/usr/bin/env bash
# Cache benchmark: sentinel's download path and its cache server against the
# usual tools, on one file and one machine, over loopback only.
#
#   fetch: `sentinel cache fetch` (download + sha256 while streaming + fsync +
#          rename) against `curl -o FILE; openssl dgst -sha256 FILE; sync FILE`
#          one after the other, and against the slowest of network alone
#          (curl -o /dev/null), hash alone (openssl dgst) and disk alone
#          (dd conv=fsync).
#   serve: N concurrent GETs of the file from `sentinel cache serve` against
#          the same from nginx (sendfile on), aggregate throughput.
#
# Every measure is run BENCH_RUNS times (3), after one untimed warm-up run,
# and the median is reported. The
# source file stays warm in the page cache for every contender alike (caches
# are not dropped): what is compared is the work each one does, not the disk
# reads of whoever runs first. Before each timed run `sync` flushes what the
# previous run left dirty, so every run starts from the same state.
#
# Environment: BENCH_SIZE_MIB (1024), BENCH_RUNS (3), BENCH_CLIENTS (12),
# TMPDIR (where the file, the stores and nginx's prefix go). Needs bin/sentinel
# (`make build`), nginx, curl, openssl. Ends with a markdown table.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SENTINEL=$ROOT/bin/sentinel
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
CLIENTS=${BENCH_CLIENTS:-12}

die() { echo "bench-cache: $*" >&2; exit 1; }

for v in SIZE_MIB RUNS CLIENTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$RUNS" -le 20 ] || die "BENCH_RUNS is at most 20"
[ "$CLIENTS" -le 64 ] || die "BENCH_CLIENTS is at most 64"
[ -x "$SENTINEL" ] || die "$SENTINEL is missing: run make build first"
"$SENTINEL" cache fetch --help >/dev/null 2>&1 || die "$SENTINEL has no 'cache fetch' command: run make build first"

./scripts/install-test-deps.sh
for tool in nginx curl openssl dd sync ss awk; do
  command -v "$tool" >/dev/null || die "$tool is not installed (scripts/install-test-deps.sh installs nginx-light, curl and openssl as root)"
done

SIZE=$((SIZE_MIB * 1024 * 1024))
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sentinel-bench.XXXXXX")
NGINX_PID=
SERVE_PID=
BG_PIDS=()

# stop PID: SIGTERM, up to 10 s to go, then SIGKILL.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$SERVE_PID" ]; then stop "$SERVE_PID"; fi
  if [ -n "$NGINX_PID" ]; then stop "$NGINX_PID"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ----

# timeit CMD...: runs CMD after a sync; its wall time in seconds goes to $T,
# its exit status is timeit's.
T=
timeit() {
  local t0 t1 rc=0
  sync
  t0=$(date +%s.%N)
  "$@" || rc=$?
  t1=$(date +%s.%N)
  T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  return "$rc"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }
mibps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# measure NAME BYTES SETUP CMD: runs SETUP (untimed) then CMD (timed) RUNS
# times, after one untimed warm-up run (the first run after another contender
# pays for what that one left behind: freed blocks, cold code); the median
# time goes to MED[NAME], the MiB/s to RATE[NAME].
declare -A MED RATE
measure() {
  local name=$1 bytes=$2 setup=$3 cmd=$4 times=() i
  for ((i = 0; i <= RUNS; i++)); do
    "$setup"
    timeit "$cmd"
    [ "$i" -eq 0 ] || times+=("$T")
  done
  MED[$name]=$(median "${times[@]}")
  RATE[$name]=$(mibps "$bytes" "${MED[$name]}")
  printf '  %-34s runs %s s  median %s s  %s MiB/s\n' "$name" "${times[*]}" "${MED[$name]}" "${RATE[$name]}"
}

free_port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 40000))
    [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

# wait_http URL PID: up to 10 s for URL to answer 2xx, while PID lives.
wait_http() {
  local url=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -sf -o /dev/null -r 0-0 "$url" && return 0
    sleep 0.1
  done
  return 1
}

# ---- the file ----

echo "bench-cache: generating ${SIZE_MIB} MiB of random data in $TMP"
mkdir -p "$TMP/www"
head -c "$SIZE" /dev/urandom >"$TMP/www/blob"
[ "$(stat -c %s "$TMP/www/blob")" -eq "$SIZE" ] || die "could not write $SIZE bytes to $TMP (disk full?)"
HEX=$(openssl dgst -sha256 -r "$TMP/www/blob" | awk '{ print $1 }')
echo "bench-cache: sha256 $HEX"

# ---- nginx ----

start_nginx() {
  local port=$1 user_line=
  [ "$(id -u)" -eq 0 ] && user_line='user root;'
  mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
  cat >"$TMP/nginx/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log $TMP/nginx/logs/access.log;
  client_body_temp_path $TMP/nginx/tmp/body;
  proxy_temp_path $TMP/nginx/tmp/proxy;
  fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
  uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
  scgi_temp_path $TMP/nginx/tmp/scgi;
  default_type application/octet-stream;
  sendfile on;
  server {
    listen 127.0.0.1:$port;
    root $TMP/www;
  }
}
EOF
  nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
  NGINX_PID=$!
}

NGINX_URL=
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  start_nginx "$port"
  if wait_http "http://127.0.0.1:$port/blob" "$NGINX_PID"; then
    NGINX_URL=http://127.0.0.1:$port/blob
    break
  fi
  stop "$NGINX_PID"
  NGINX_PID=
done
[ -n "$NGINX_URL" ] || { tail -n 20 "$TMP/nginx/logs/error.log" >&2 || true; die "nginx did not start (log above)"; }
echo "bench-cache: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') serving $NGINX_URL"

# ---- 1. fetch: sentinel against curl + openssl, and each stage alone ----

OUT=$TMP/out
STORE=$TMP/fetch-store

check_size() { # FILE: the file must hold SIZE bytes.
  [ "$(stat -c %s "$1")" -eq "$SIZE" ] || die "$1 holds $(stat -c %s "$1") bytes, not $SIZE"
}

clean_out() { rm -rf "$STORE" "$OUT" "$OUT.sha256"; }

run_sentinel_fetch() {
  "$SENTINEL" cache fetch --dir "$STORE" --sha256 "$HEX" --size "$SIZE" "$NGINX_URL" >"$TMP/fetch.log" 2>&1 ||
    { cat "$TMP/fetch.log" >&2; die "sentinel cache fetch failed"; }
}
run_curl_openssl() {
  curl -sS --fail -o "$OUT" "$NGINX_URL" || die "curl -o $OUT failed"
  openssl dgst -sha256 -r "$OUT" >"$OUT.sha256" || die "openssl dgst failed"
  sync "$OUT" || die "sync $OUT failed"
}
run_curl_null() { curl -sS --fail -o /dev/null "$NGINX_URL" || die "curl -o /dev/null failed"; }
run_hash() { openssl dgst -sha256 -r "$TMP/www/blob" >"$OUT.sha256" || die "openssl dgst failed"; }
run_disk() { dd if="$TMP/www/blob" of="$OUT" bs=1M conv=fsync status=none || die "dd failed"; }

echo
echo "fetch of ${SIZE_MIB} MiB from nginx on loopback, $RUNS runs each after a warm-up:"
measure "sentinel cache fetch" "$SIZE" clean_out run_sentinel_fetch
check_size "$STORE/sha256/$HEX"
measure "curl -o, openssl dgst, sync" "$SIZE" clean_out run_curl_openssl
check_size "$OUT"
[ "$(awk '{ print $1 }' "$OUT.sha256")" = "$HEX" ] || die "curl's copy does not hash to $HEX"
measure "network alone (curl -o /dev/null)" "$SIZE" clean_out run_curl_null
measure "hash alone (openssl dgst -sha256)" "$SIZE" clean_out run_hash
measure "disk alone (dd bs=1M conv=fsync)" "$SIZE" clean_out run_disk
check_size "$OUT"
clean_out

SLOWEST=$(maxof "${MED[network alone (curl -o /dev/null)]}" "${MED[hash alone (openssl dgst -sha256)]}" "${MED[disk alone (dd bs=1M conv=fsync)]}")
R_PIPE=$(ratio "${MED[sentinel cache fetch]}" "${MED[curl -o, openssl dgst, sync]}")
R_SLOW=$(ratio "${MED[sentinel cache fetch]}" "$SLOWEST")
# The stages overlap only as far as the cores allow: the sum is what they cost
# done one after the other, the slowest what they would cost fully overlapped.
SUM=$(awk -v a="${MED[network alone (curl -o /dev/null)]}" -v b="${MED[hash alone (openssl dgst -sha256)]}" -v c="${MED[disk alone (dd bs=1M conv=fsync)]}" 'BEGIN { printf "%.3f", a + b + c }')
R_SUM=$(ratio "${MED[sentinel cache fetch]}" "$SUM")
echo "  sentinel time / (curl -o + openssl + sync) time: $R_PIPE"
echo "  sentinel time / slowest of network, hash, disk alone ($SLOWEST s): $R_SLOW"
echo "  sentinel time / sum of network, hash, disk alone ($SUM s): $R_SUM"

# ---- 2. serve: N concurrent GETs, sentinel cache serve against nginx ----

SERVE_STORE=$TMP/serve-store
mkdir -p "$SERVE_STORE/sha256"
ln "$TMP/www/blob" "$SERVE_STORE/sha256/$HEX" 2>/dev/null || cp "$TMP/www/blob" "$SERVE_STORE/sha256/$HEX"
"$SENTINEL" cache serve --plain-http --dir "$SERVE_STORE" --listen 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.log" &
SERVE_PID=$!
SERVE_ADDR=
for ((i = 0; i < 100; i++)); do
  SERVE_ADDR=$(sed -n 's/^listening on \(127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$TMP/serve.out")
  [ -n "$SERVE_ADDR" ] && break
  kill -0 "$SERVE_PID" 2>/dev/null || break
  sleep 0.1
done
[ -n "$SERVE_ADDR" ] || { cat "$TMP/serve.log" >&2; die "sentinel cache serve did not start (log above)"; }
SERVE_URL=http://$SERVE_ADDR/artifacts/sha256/$HEX

# The first request after start hashes the file once (the server serves only
# what it has verified itself); it is timed apart, not in the runs.
timeit curl -sS --fail -o /dev/null "$SERVE_URL" || die "GET $SERVE_URL failed"
FIRST=$T

# concurrent URL: CLIENTS GETs at once, each must receive the whole file.
concurrent() {
  local url=$1 i pid fail=0
  BG_PIDS=()
  for ((i = 1; i <= CLIENTS; i++)); do
    curl -sS --fail -o /dev/null -w '%{size_download}\n' "$url" >"$TMP/get.$i" &
    BG_PIDS+=($!)
  done
  for pid in "${BG_PIDS[@]}"; do wait "$pid" || fail=1; done
  BG_PIDS=()
  [ "$fail" -eq 0 ] || die "a concurrent GET of $url failed"
  for ((i = 1; i <= CLIENTS; i++)); do
    [ "$(cat "$TMP/get.$i")" -eq "$SIZE" ] || die "a concurrent GET of $url got $(cat "$TMP/get.$i") bytes, not $SIZE"
  done
}
nothing() { :; }
get_sentinel() { concurrent "$SERVE_URL"; }
get_nginx() { concurrent "$NGINX_URL"; }

echo
echo "$CLIENTS concurrent GETs of the ${SIZE_MIB} MiB file on loopback, $RUNS runs each after a warm-up (aggregate MiB/s):"
echo "  (sentinel's first GET after start, which hashes the file once: $FIRST s, not counted)"
measure "sentinel cache serve" $((CLIENTS * SIZE)) nothing get_sentinel
measure "nginx (sendfile on)" $((CLIENTS * SIZE)) nothing get_nginx
R_SERVE=$(ratio "${RATE[sentinel cache serve]}" "${RATE[nginx (sendfile on)]}")
MET=$(awk -v r="$R_SERVE" 'BEGIN { print (r >= 0.90 ? "met" : "NOT met") }')
echo "  sentinel / nginx aggregate throughput: $R_SERVE (target >= 0.90: $MET)"

# ---- summary ----

MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
FS=$(df -T "$TMP" | awk 'NR == 2 { print $2 " on " $1 }')
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }

echo
echo "Machine: $(nproc) CPUs, ${MODEL:-unknown CPU}; $(uname -sr); files on $FS; load average $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after."
echo "File: ${SIZE_MIB} MiB of random data, served by nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on 127.0.0.1; median of $RUNS runs after a warm-up; source file warm in the page cache for every contender."
echo
echo "| measure (${SIZE_MIB} MiB file, loopback) | median time (s) | MiB/s |"
echo "| --- | ---: | ---: |"
row "\`sentinel cache fetch\` (download + sha256 + fsync + rename)" "${MED[sentinel cache fetch]}" "${RATE[sentinel cache fetch]}"
row "\`curl -o FILE\`, then \`openssl dgst -sha256 FILE\`, then \`sync FILE\`" "${MED[curl -o, openssl dgst, sync]}" "${RATE[curl -o, openssl dgst, sync]}"
row "network alone: \`curl -o /dev/null\`" "${MED[network alone (curl -o /dev/null)]}" "${RATE[network alone (curl -o /dev/null)]}"
row "hash alone: \`openssl dgst -sha256\`" "${MED[hash alone (openssl dgst -sha256)]}" "${RATE[hash alone (openssl dgst -sha256)]}"
row "disk alone: \`dd bs=1M conv=fsync\`" "${MED[disk alone (dd bs=1M conv=fsync)]}" "${RATE[disk alone (dd bs=1M conv=fsync)]}"
row "$CLIENTS concurrent GETs from \`sentinel cache serve\` (aggregate)" "${MED[sentinel cache serve]}" "${RATE[sentinel cache serve]}"
row "$CLIENTS concurrent GETs from nginx, sendfile on (aggregate)" "${MED[nginx (sendfile on)]}" "${RATE[nginx (sendfile on)]}"
echo
echo "| ratio | value |"
echo "| --- | ---: |"
echo "| sentinel fetch time / (curl -o + openssl + sync) time | $R_PIPE |"
echo "| sentinel fetch time / slowest of network, hash, disk alone | $R_SLOW |"
echo "| sentinel fetch time / sum of network, hash, disk alone | $R_SUM |"
echo "| sentinel serve / nginx aggregate throughput (target >= 0.90) | $R_SERVE |"
