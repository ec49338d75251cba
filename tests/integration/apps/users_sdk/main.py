"""A WSGI app wrapped with google.appengine.api.wrap_wsgi_app, reporting the users API's view."""

import json

from google.appengine.api import users, wrap_wsgi_app


def _app(environ, start_response):
    user = users.get_current_user()
    body = {
        "signed_in": user is not None,
        "email": user.email() if user else None,
        "user_id": user.user_id() if user else None,
        "nickname": user.nickname() if user else None,
        "auth_domain": user.auth_domain() if user else None,
        "is_admin": users.is_current_user_admin(),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "https": environ.get("HTTPS"),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


app = wrap_wsgi_app(_app)
