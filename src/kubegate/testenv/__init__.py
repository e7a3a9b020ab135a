"""The local Kubernetes test environment.

Builds (once, cached by version outside the repository) and starts the real components that
kubegate's tests, demo and benchmarks run against: etcd, kube-apiserver, kwok, Dex,
PostgreSQL and Chromium. One implementation, used by the pytest fixtures, ``kubegate demo``
and ``benchmarks/``.
"""
