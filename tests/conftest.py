"""Test-suite wiring: the fixture plugins every test can use."""

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.fixtures.timing",
    "tests.fixtures.shutdown",
    "tests.fixtures.kube",
    "tests.fixtures.postgres",
    "tests.fixtures.gateway",
    "tests.fixtures.browser",
    "tests.fixtures.dex",
    "tests.fixtures.sso",
    "tests.fixtures.database",
    "tests.fixtures.api",
    "tests.fixtures.access",
    "tests.fixtures.cli",
    "tests.fixtures.agent_identity",
    "tests.fixtures.portal_browser",
]

# Hypothesis's "input generation is slow" health check is a timing assertion: on the 2-core
# machine under a build or the e2e tests' apiserver it fails tests whose code is fine. The
# other health checks (and deadlines, which pytest's own timeouts cover) stay on.
settings.register_profile("kubegate", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kubegate")
