"""kubegate's demo (``make demo``): the local test environment, kubegate's server and agent,
and a granted user's kubectl through kubegate, until Ctrl-C.

Development tooling, like the rest of :mod:`testenv`: it runs from a checkout and is not in
the wheel a user installs.
"""
