"""kubegate: a self-hosted access gateway for Kubernetes."""

__version__ = "0.1.0.dev0"
