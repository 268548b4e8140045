# Sourced by scripts/test, scripts/demo and scripts/bench: creates .venv (reused when
# present) and installs this package with the named extras, again only when
# pyproject.toml changed since the last install.
ensure_venv() {
    local extras="$1"
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        "$python" -m venv .venv
    fi
    local stamp=".venv/.installed-${extras:-base}"
    local digest
    digest=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
        local target="."
        [ -n "$extras" ] && target=".[$extras]"
        if ! .venv/bin/python -m pip install --quiet -e "$target" >.venv/pip.log 2>&1; then
            cat .venv/pip.log >&2
            return 1
        fi
        echo "$digest" > "$stamp"
    fi
}
