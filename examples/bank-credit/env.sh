# Sourced by run.sh and certs.sh: the Python to run vfl with, and `vfl` as a function of it.
# PYTHON overrides; otherwise the repository's .venv (made by `make test` or `make example-bank-credit`), else python3.
if [[ -z "${PYTHON:-}" ]]; then
  for candidate in "$(dirname "${BASH_SOURCE[0]}")/../../.venv/bin/python" python3; do
    if "$candidate" -c "import vfl" 2>/dev/null; then PYTHON=$candidate; break; fi
  done
fi
if [[ -z "${PYTHON:-}" ]] || ! "$PYTHON" -c "import vfl" 2>/dev/null; then
  echo "no Python with vfl installed: run 'make example-bank-credit' at the repository root (it sets up .venv)," \
       "pip install the repository, or set PYTHON" >&2
  exit 2
fi
vfl() { "$PYTHON" -m vfl.cli.main "$@"; }
