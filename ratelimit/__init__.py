"""Rate limiting: the rate grammar, the counters, who is counted, the middleware and the health check.

It sits between ``audit`` and ``accounts``: it records rejections in the audit trail, and ``accounts``
validates keys' own limits with its grammar and tells it who an API key is (a resolver registered in
``AccountsConfig.ready()``). Importing this package (settings do, for the grammar) loads no Django models.
"""
