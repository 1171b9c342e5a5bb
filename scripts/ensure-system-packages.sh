# Sourced by demo.sh and test.sh: the Debian packages the demo and the tests run.
#     source scripts/ensure-system-packages.sh graphviz:dot redis-server:redis-server
# Each argument is PACKAGE:COMMAND; a package is installed when its command is missing.
missing=()
for pair in "$@"; do
    command -v "${pair#*:}" >/dev/null 2>&1 || missing+=("${pair%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "Installing Debian packages: ${missing[*]} ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "error: missing system packages: ${missing[*]}" >&2
        echo "install them first: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
