#!/usr/bin/env bash
# Run the test suite on the oldest versions this package declares: Python from `python_requires` and every
# `name>=X` of setup.cfg's install_requires and its bench, examples and deploy extras (plus pytest), installed
# as `name==X` in a virtual environment of their own. The floors are read from setup.cfg, so what this checks
# is what the package declares.
#
# Usage: bash tools/test_floors.sh [--python EXE] [--venv DIR] [--fresh] [-- PYTEST_ARGS...]
#   --python EXE  the interpreter for the venv (default: python<floor of python_requires>, e.g. python3.9,
#                 found on PATH or under pyenv's versions)
#   --venv DIR    where to build the venv (default: ~/.cache/lstrl_layers/floor-venv); reused if present
#   --fresh       delete DIR first
#   PYTEST_ARGS   passed to pytest (default: the whole suite)
#
# torch from PyPI is a CUDA build on Linux x86_64 (several GB); pip's own variables (PIP_INDEX_URL,
# PIP_EXTRA_INDEX_URL) apply, so a CPU-only index can be given that way. Not part of CI: run it by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

python_exe=""
venv="${HOME}/.cache/lstrl_layers/floor-venv"
fresh=0
pytest_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) python_exe="${2:?--python needs an interpreter}"; shift 2 ;;
        --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
        --fresh) fresh=1; shift ;;
        --) shift; pytest_args=("$@"); break ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test_floors.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

floor_python=$(sed -n 's/^python_requires *= *>= *\([0-9][0-9.]*\).*/\1/p' setup.cfg)
if [[ -z "$floor_python" ]]; then
    echo "test_floors.sh: no 'python_requires = >=X.Y' in setup.cfg" >&2
    exit 1
fi
if [[ -z "$python_exe" ]]; then
    for candidate in "python${floor_python}" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"${floor_python}".*/bin/python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "" >/dev/null 2>&1; then  # not a dead shim
            python_exe=$(command -v "$candidate")
            break
        fi
    done
fi
if [[ -z "$python_exe" ]]; then
    echo "test_floors.sh: no python${floor_python} found (the floor of python_requires); pass --python EXE" >&2
    exit 1
fi
actual_python=$("$python_exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$actual_python" != "$floor_python" ]]; then
    echo "test_floors.sh: note: $python_exe is Python $actual_python, the floor is $floor_python" >&2
fi

if [[ $fresh == 1 ]]; then
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    "$python_exe" -m venv "$venv"
fi

# `name>=X` of install_requires and the extras -> `name==X`; dev tools (ruff, mypy) are not needed for tests
constraints="$venv/floors.txt"
"$venv/bin/python" - setup.cfg >"$constraints" <<'EOF'
import configparser
import re
import sys

cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
lines = cfg["options"]["install_requires"].splitlines()
for extra in ("bench", "examples", "deploy", "dev"):
    lines += cfg["options.extras_require"][extra].splitlines()
floors = {}
for line in lines:
    line = line.split("#")[0].strip()
    if not line:
        continue
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", line)
    if match is None:
        sys.exit(f"test_floors.sh: {line!r} in setup.cfg is not of the form name>=X")
    name, version = match[1].lower(), match[2]
    if name in ("ruff", "mypy"):
        continue
    if floors.setdefault(name, version) != version:
        sys.exit(f"test_floors.sh: setup.cfg gives {name} two floors: {floors[name]} and {version}")
for name, version in floors.items():
    print(f"{name}=={version}")
EOF
echo "== floors (from setup.cfg): $(tr '\n' ' ' <"$constraints")"

start=$SECONDS
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --constraint "$constraints" \
    -e ".[bench,examples,export]" pytest
echo "== installed in $((SECONDS - start)) s into $venv"
"$venv/bin/python" - "$constraints" <<'EOF'
import sys
from importlib.metadata import version

names = [line.split("==")[0] for line in open(sys.argv[1]) if line.strip()]
print(f"== Python {sys.version.split()[0]}; " + ", ".join(f"{name} {version(name)}" for name in names))
EOF

start=$SECONDS
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider ${pytest_args[@]+"${pytest_args[@]}"} || status=$?
echo "== pytest exit status $status after $((SECONDS - start)) s on the floor versions above"
exit $status
