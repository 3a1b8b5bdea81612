# Sourced by the pip steps of images/Dockerfile.*: when the build was given a CA bundle as the BuildKit secret
# `ca` (a TLS-intercepting proxy's), pip trusts it in addition to the system's CAs. The combined bundle goes
# to /tmp, which those steps mount as a tmpfs, so no certificate ends up in a layer.
if [[ -s /run/secrets/ca ]]; then
    cat /etc/ssl/certs/ca-certificates.crt /run/secrets/ca > /tmp/pip-ca.pem
    export PIP_CERT=/tmp/pip-ca.pem
fi
