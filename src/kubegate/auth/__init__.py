"""Authentication: secret generation and hashing, API tokens, portal sessions."""
