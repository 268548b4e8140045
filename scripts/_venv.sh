# Sourced by the scripts: `ensure_venv [GROUP...]` creates the virtualenv $VENV (default
# .venv; reused when present) with $PYTHON (default python3), installs this package
# editable plus the named dependency groups of pyproject.toml, and does it again only
# when pyproject.toml changed since. Progress goes to stderr: a first run takes a minute.
VENV="${VENV:-.venv}"

ensure_venv() {
    local python="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating the virtualenv $VENV with $("$python" --version 2>&1)" >&2
        "$python" -m venv "$VENV"
    fi
    local digest group
    digest=$(sha256sum < pyproject.toml | cut -d' ' -f1)
    # One stamp per group, holding the pyproject.toml it was installed from.
    local stale=()
    for group in base "$@"; do
        [ "$(cat "$VENV/.installed-$group" 2>/dev/null)" = "$digest" ] || stale+=("$group")
    done
    [ ${#stale[@]} -eq 0 ] && return 0
    local args=(--quiet -e .)
    for group in "$@"; do
        args+=(--group "$group")
    done
    echo "setup: installing the package (editable)${1:+ and the dependency groups: $*}" \
        "into $VENV (a minute the first time)" >&2
    # Dependency groups (PEP 735) need pip 25.1 or later.
    if ! "$VENV/bin/python" -m pip install --quiet 'pip>=25.1' >"$VENV/pip.log" 2>&1 ||
        ! "$VENV/bin/python" -m pip install "${args[@]}" >>"$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        return 1
    fi
    for group in base "$@"; do
        echo "$digest" > "$VENV/.installed-$group"
    done
}
