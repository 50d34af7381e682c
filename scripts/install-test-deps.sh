#!/usr/bin/env bash
# Installs, idempotently, the real parts the tests run: OpenSSH (the SSH
# transport's sshd), tinyproxy (the HTTP
# proxy of the proxy tests), docker-registry (distribution 2.8: the OCI
# registries and pull-through mirror of the registry tests; the tests
# start their own, the package's service is left alone), man-db and systemd (the Debian package's test
# reads its man page and runs systemd-analyze verify on its unit) and, for
# `make bench`, nginx, curl and iproute2 (tc: the staging benchmark's
# 1 Gbit/s link on loopback). Nothing is
# installed when everything is there; without root it only says what is
# missing (the tests that need it then skip and say why).
set -euo pipefail

# Plain go commands (a hand-run `go vet`, an editor, a pre-commit hook) use
# the Go that go.mod names, as the Makefile does: where the installed Go's
# go.env says GOTOOLCHAIN=local, the user's go env says which to fetch.
want="go$(sed -n 's/^go //p' "$(dirname "$0")/../go.mod")"
if command -v go >/dev/null && [ "$(cd / && env -u GOTOOLCHAIN go env GOTOOLCHAIN)" = local ]; then
  go env -w GOTOOLCHAIN="$want"
  echo "install-test-deps: plain go commands now use $want (go env -w GOTOOLCHAIN=$want)" >&2
fi

need=()
for pkg in tinyproxy openssh-server openssh-client sudo nginx-light curl openssl man-db systemd docker-registry iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing ${need[*]} (run as root on Debian to install them); the tests that need them will skip" >&2
  exit 0
fi
echo "install-test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
