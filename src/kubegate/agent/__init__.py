"""The in-cluster agent: holds the tunnel, reconciles grants into RBAC, runs proxied requests."""
