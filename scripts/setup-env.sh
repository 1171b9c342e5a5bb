# Sourced by demo.sh and test.sh: make .venv and install the project into it with the given extras,
# editable, so that the hamilton_feast package runs from this tree.
#     source scripts/setup-env.sh notebook,redis
# Installs again only when pyproject.toml, constraints.txt or the extras change.
extras="$1"
venv="${VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${extras//,/-}"
if [ ! -f "$stamp" ]; then
    echo "Installing the project with extras [$extras] into $venv ..."
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]" -c constraints.txt
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"
