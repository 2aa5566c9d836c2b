# Shared by quickstart.sh and install-deps.sh (source it; bash).

# apt_ensure PKG...: install the Debian packages that are missing (idempotent).
apt_ensure() {
    local sudo="" need=() p
    [ "$(id -u)" = 0 ] || sudo="sudo"
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
}

# venv_install SPEC: ./.venv from Debian's python3 (not a pyenv one: bcc's
# bindings import only there, hence --system-site-packages), then pip
# install -e SPEC into it.  The C workload engine is optional for pip (model
# mode installs without a compiler, setup.py); here it is required, so a
# failed engine build fails the install.
venv_install() {
    [ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
    # setuptools >= 77 (PEP 639 license) for pip install --no-build-isolation -e .
    .venv/bin/pip install -q --upgrade pip "setuptools>=77" >/dev/null
    PMEMTRACE_REQUIRE_ENGINE=1 .venv/bin/pip install -q -e "$1"
}
