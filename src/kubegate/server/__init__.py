"""The kubegate server: REST API, portal API and (later) the agent tunnel endpoint."""
