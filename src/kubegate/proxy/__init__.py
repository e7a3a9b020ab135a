"""The Kubernetes API proxy: kubectl's requests, authenticated and relayed over the tunnel."""
