"""The gateway's runtime: the Kubernetes API proxy's listener, admission and relay, the
authority cache and the registry of connected agents. It reaches the database only through
the Protocols of :mod:`kubegate.gateway.store`, which the server implements."""
