"""ERR-2 test app: its own errors must pass the front end untouched."""


def app(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"the app's own 404"]
