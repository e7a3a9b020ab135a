"""The agent's install command as the register page shows it."""

from __future__ import annotations

from kubegate.domain.agent_install import install_command


def test_the_command_pipes_the_manifest_to_kubectl_with_the_credential_in_the_env() -> None:
    command = install_command(
        cluster_name="prod",
        server_url="https://kg.example.com:8443",
        agent_credential="kg_agent_abc",
        ca_file="kubegate-ca.crt",
    )
    assert command == (
        "KUBEGATE_CLUSTER_TOKEN=kg_agent_abc \\\n"
        "  kubegate cluster install-manifest prod \\\n"
        "  --server https://kg.example.com:8443 --ca-file kubegate-ca.crt \\\n"
        "  | kubectl apply -f -"
    )


def test_a_publicly_trusted_server_needs_no_ca_file_and_odd_values_are_quoted() -> None:
    command = install_command(
        cluster_name="prod", server_url="https://kg/a b", agent_credential="x", ca_file=None
    )
    assert "--ca-file" not in command and "--server 'https://kg/a b'" in command
