#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (ci/install-tools.sh), then
# lints, type-checks and runs pytest (unit, chart renders with Helm 3 and 4, end-to-end with real etcd).
# Extra arguments go to pytest, e.g. `bash ci/test.sh tests/unit -k postrender`. Tests run in
# $TEST_WORKERS pytest-xdist workers (default 3; 0 runs them in this process), test by test; a
# module whose module-scoped fixtures are shared (a sandbox, a release) is marked `xdist_group`
# and runs whole in one worker. (Starting the slow tests first made a run much slower: 26% done
# after 28 minutes, the end-to-end tests all at once.) The end-to-end tests
# mostly wait, so 3 workers on 2 cores pay off; 4 were slower (25:51 against 24:34 in pytest,
# load average 11: every worker starts its own control plane). The sandbox failures once blamed
# on load came from a full disk: a run left about 16 GB of etcd WAL behind in pytest's temporary
# directories, until pytest.ini kept only failed tests' files.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
eval "$(bash ci/install-tools.sh)"

echo "== ruff"
ruff check --config plugin/pyproject.toml plugin/src tests bench ci chart/files
ruff format --check --config plugin/pyproject.toml plugin/src tests bench ci chart/files
echo "== mypy"
mypy --config-file plugin/pyproject.toml plugin/src chart/files/etcd-agent
# The Web UI imports the agent's etcd client (its pod mounts both side by side); a run of its own,
# since both directories have a __main__.py.
MYPYPATH=chart/files/etcd-agent mypy --config-file plugin/pyproject.toml chart/files/webui
echo "== generated files"
python ci/generate.py --check
echo "== pytest"
workers=${TEST_WORKERS:-3}
if [ "$workers" = 0 ]; then
  exec python -m pytest "$@"
fi
exec python -m pytest -n "$workers" --dist loadgroup "$@"
