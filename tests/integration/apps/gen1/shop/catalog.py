def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"catalog for " + environ["PATH_INFO"].encode()]
