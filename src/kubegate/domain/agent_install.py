"""The command line that installs a cluster's agent, as the register page shows it: pure.

``kubegate cluster install-manifest`` prints the manifest (``agent/manifest.py``) with the
agent credential in its Secret; piped to ``kubectl apply`` it installs the agent
(``docs/agent.md``). The credential travels in ``KUBEGATE_CLUSTER_TOKEN``, never as an
argument a process listing would show.
"""

from __future__ import annotations

import shlex

CA_FILE = "kubegate-ca.crt"
"""What the register page names the server's CA when the agent must pin it."""


def install_command(
    *, cluster_name: str, server_url: str, agent_credential: str, ca_file: str | None
) -> str:
    """The shell command that installs ``cluster_name``'s agent dialling ``server_url``,
    pinning the CA in ``ca_file`` (None: the server's certificate is publicly trusted)."""
    options = [f"--server {shlex.quote(server_url)}"]
    if ca_file is not None:
        options.append(f"--ca-file {shlex.quote(ca_file)}")
    return (
        f"KUBEGATE_CLUSTER_TOKEN={shlex.quote(agent_credential)} \\\n"
        f"  kubegate cluster install-manifest {shlex.quote(cluster_name)} \\\n"
        f"  {' '.join(options)} \\\n"
        "  | kubectl apply -f -"
    )
