vcl 4.1;
# Varnish for benchmarks/bench (system "varnish"). The backend port is filled in by
# bench/harness.py.
#
# Caching follows the response, as gfe_proxy's does: Cache-Control public/max-age is stored
# (Varnish's default), a response without Cache-Control is passed (hit-for-miss), never given
# Varnish's default 120 s TTL. Text is gzipped by Varnish (at gzip_level 4, set on the command
# line, the level gfe_proxy uses) for clients that accept it.

backend default {
    .host = "127.0.0.1";
    .port = "@BACKEND_PORT@";
}

sub vcl_recv {
    # Varnish rewrites Accept-Encoding to "gzip" on backend fetches; keep what the client
    # asked, so a passed (uncacheable) response is gzipped only for a client that accepts it.
    set req.http.X-Bench-AE = req.http.Accept-Encoding;
}

sub vcl_backend_response {
    if (!beresp.http.Cache-Control) {
        if (beresp.http.Content-Type ~ "^text/" && bereq.http.X-Bench-AE ~ "gzip") {
            set beresp.do_gzip = true;
        }
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # Cached text is stored gzipped (Varnish's usual setup): served as is to gzip clients,
    # gunzipped on delivery for the others.
    if (beresp.http.Content-Type ~ "^text/") {
        set beresp.do_gzip = true;
    }
}

sub vcl_deliver {
    # The harness checks the first response after warm-up for a hit.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
