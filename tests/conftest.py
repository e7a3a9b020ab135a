"""Test-suite wiring: the fixture plugins every test can use."""

pytest_plugins = [
    "tests.fixtures.shutdown",
    "tests.fixtures.kube",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.dex",
    "tests.fixtures.sso",
    "tests.fixtures.database",
    "tests.fixtures.api",
    "tests.fixtures.access",
    "tests.fixtures.gateway",
    "tests.fixtures.cli",
]
