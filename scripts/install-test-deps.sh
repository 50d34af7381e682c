#!/usr/bin/env bash
# Installs, idempotently, the real parts the tests run: OpenSSH (the SSH
# transport's sshd), tinyproxy (the HTTP
# proxy of the proxy tests), docker-registry (distribution 2.8: the OCI
# registries and pull-through mirror of the registry tests), man-db and systemd (the Debian package's test
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
  # Not `dpkg -s`: it succeeds for a package removed with its conffiles kept.
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing ${need[*]} (run as root on Debian to install them); the tests that need them will skip" >&2
  exit 0
fi
echo "install-test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Nothing installed here is left running: the tests start their own sshd,
# tinyproxy, nginx and registries on loopback, and docker-registry's own
# service would be a registry without auth on :5000 of every interface.
# So the packages' services are not started during this install (a
# policy-rc.d of our own, removed after, unless the machine has one), and
# docker-registry's is not enabled at boot.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# install-test-deps: no service starts during its install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [[ " ${need[*]} " == *" docker-registry "* ]]; then
  systemctl disable docker-registry.service >/dev/null 2>&1 || true
  echo "install-test-deps: docker-registry's own service is neither started nor enabled (the tests start theirs on loopback)" >&2
fi
