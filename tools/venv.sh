# Helpers for the scripts that make Python venvs from PyPI: tools/setup.sh (.venv,
# .venv-ref), tools/peer_torch_pruning.sh (.venv-tp), tools/keras_models.sh
# (.venv-tf). Source it after setting TAG (the prefix of messages); PYTHON picks
# the interpreter that creates a venv (CPython >= 3.10).

say() { printf '[%s] %s\n' "$TAG" "$*" >&2; }

# make_venv DIR: creates the venv DIR when it has no python yet.
make_venv() {
  [ -x "$1/bin/python" ] && return 0
  local py=${PYTHON:-python3}
  command -v "$py" >/dev/null || { echo "$TAG: $py not found (need CPython >= 3.10)" >&2; exit 1; }
  say "creating $1"
  "$py" -m venv "$1"
}

# pip_retry DIR ARGS...: pip install into venv DIR, with retries: the registry
# mirror has been seen missing a pinned wheel on a first try and serving it on a
# later one.
pip_retry() {
  local venv=$1; shift
  local i
  for i in 1 2 3; do
    if "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@"; then return 0; fi
    say "pip install $* failed (try $i/3); retrying in $((i * 5)) s"
    sleep $((i * 5))
  done
  return 1
}

# py_has DIR NAME VERSION: venv DIR holds exactly that version of the distribution.
py_has() { "$1/bin/python" - "$2" "$3" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as m
try:
    sys.exit(0 if m.version(sys.argv[1]) == sys.argv[2] else 1)
except Exception:
    sys.exit(1)
PYEOF
}
