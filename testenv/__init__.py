"""The local Kubernetes test environment.

Builds (once, cached by version outside the repository) and starts the real components that
kubegate's tests, demo and benchmarks run against: etcd, kube-apiserver, kwok, Dex,
PostgreSQL and Chromium. One implementation, used by the pytest fixtures, the demo
(:mod:`testenv.demo`, ``make demo``) and ``benchmarks/``.

Development tooling: it lives beside ``benchmarks/`` at the root of a checkout, runs from
there (``python -m testenv``), and is not in the wheel a user installs. It may import
:mod:`kubegate`; :mod:`kubegate` never imports it (import-linter holds both).
"""
