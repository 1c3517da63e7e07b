import json
import os
import time

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt


def nginx_view(request):
    # Exactly the article's view (its closing tag really is "<h1>").
    html = "<h1>Using port " + request.META["SERVER_PORT"] + "<h1>"
    return HttpResponse(html)


@csrf_exempt
def post_view(request):
    """Record each POST as "<X-Request-Id> <port> <body-length>" in $FERROLB_POST_LOG.

    The end-to-end tests use these logs to check that a POST reached exactly one
    backend exactly once.
    """
    if request.method != "POST":
        return HttpResponse("<h1>POST only</h1>", status=405)
    port = request.META["SERVER_PORT"]
    body = request.body  # read the body fully, whatever it is
    request_id = request.headers.get("X-Request-Id", "-")
    log_path = os.environ.get("FERROLB_POST_LOG")
    if log_path:
        # One small write on an O_APPEND file: lines from threads do not interleave.
        with open(log_path, "a", encoding="utf-8") as f:
            f.write("%s %s %d\n" % (request_id, port, len(body)))
    return HttpResponse("<h1>Posted to port " + port + "</h1>")


def slow_view(request):
    """Sleep ?s= seconds (default 1, at most 300), then answer like nginx_view."""
    try:
        seconds = float(request.GET.get("s", "1"))
    except ValueError:
        return HttpResponse("<h1>bad s</h1>", status=400)
    seconds = max(0.0, min(seconds, 300.0))
    time.sleep(seconds)
    port = request.META["SERVER_PORT"]
    return HttpResponse("<h1>Slept %gs on port %s</h1>" % (seconds, port))


def scheme_view(request):
    """How Django sees the request's scheme: behind ferrolb with
    `proxy_set_header X-Forwarded-Proto $scheme;` and SECURE_PROXY_SSL_HEADER set,
    an HTTPS client makes `request.is_secure()` true."""
    return HttpResponse(
        "scheme=%s secure=%s" % (request.scheme, request.is_secure())
    )


@csrf_exempt
def meta_view(request):
    """The CGI variables the server handed Django (uppercase string META keys) and
    the body's length, as JSON: what a front end passed, to compare two of them."""
    meta = {k: v for k, v in request.META.items() if k.isupper() and isinstance(v, str)}
    meta["BODY_LENGTH"] = str(len(request.body))
    return HttpResponse(json.dumps(meta, sort_keys=True), content_type="application/json")
