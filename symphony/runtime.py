"""Which server runs this process: set by symphony/asgi.py before Django loads the URLs.

The ASGI process (uvicorn) serves the long waits (streams, claims that wait for work); the URL
configuration routes the claim path to its async view only there, so a sync gunicorn worker keeps
the plain sync view and never runs an event loop per request.
"""

#: True in the ASGI process (symphony.asgi), False under gunicorn, management commands and tests.
ASGI = False
