"""SPEC ERR-1, ERR-2: the front end's own error pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gfe_proxy.config import AppConfig, ErrorHandler
from gfe_proxy.errorpages import GFE_CONTENT_TYPE, ErrorPages, gfe_error_page
from gfe_proxy.errors import ConfigError

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    416: "Requested Range Not Satisfiable",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def test_err_1_404_page_is_productions_shape() -> None:
    assert gfe_error_page(404, path="/x") == (
        b"<html><head>\n"
        b'<meta http-equiv="content-type" content="text/html;charset=utf-8">\n'
        b"<title>404 Not Found</title>\n"
        b"</head>\n"
        b"<body text=#000000 bgcolor=#ffffff>\n"
        b"<h1>Error: Not Found</h1>\n"
        b"<h2>The requested URL <code>/x</code> was not found on this server.</h2>\n"
        b"<h2></h2>\n"
        b"</body></html>\n"
    )


@pytest.mark.parametrize(("status", "title"), sorted(TITLES.items()), ids=str)
def test_err_1_title_and_heading(status: int, title: str) -> None:
    page = gfe_error_page(status, path="/p", method="PUT").decode()
    assert f"<title>{status} {title}</title>" in page
    assert f"<h1>Error: {title}</h1>" in page
    assert "Traceback" not in page
    assert "{" not in page  # every placeholder filled


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (404, "The requested URL was not found on this server."),
        (403, "Your client does not have permission to get URL from this server."),
        (405, "The request method is inappropriate for the URL."),
    ],
    ids=["404", "403", "405"],
)
def test_err_1_sentence_reads_cleanly_without_path(status: int, sentence: str) -> None:
    assert f"<h2>{sentence}</h2>" in gfe_error_page(status).decode()


def test_err_1_405_names_method_and_path() -> None:
    page = gfe_error_page(405, path="/form", method="DELETE").decode()
    assert "The request method <code>DELETE</code> is inappropriate for the URL" in page
    assert "<code>/form</code>" in page


@pytest.mark.parametrize(
    ("path", "escaped"),
    [
        ("/<script>alert(1)</script>", "/&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("/a\"b'c&d", "/a&quot;b&#x27;c&amp;d"),
        ("/{path}/{0}", "/{path}/{0}"),
    ],
    ids=["script", "quotes-amp", "braces"],
)
def test_err_1_path_is_escaped(path: str, escaped: str) -> None:
    page = gfe_error_page(404, path=path).decode()
    assert f"<code>{escaped}</code>" in page
    assert "<script>" not in page


@pytest.mark.parametrize(
    ("status", "title"),
    [(418, "I'm a Teapot"), (507, "Insufficient Storage"), (599, "Server Error")],
    ids=["known-4xx", "known-5xx", "unknown-5xx"],
)
def test_err_1_other_statuses_still_get_a_page(status: int, title: str) -> None:
    page = gfe_error_page(status).decode()
    assert f"<title>{status} {title}</title>" in page


# --- ERR-2 ---------------------------------------------------------------------------------------


def _config(tmp_path: Path, *handlers: ErrorHandler) -> AppConfig:
    return AppConfig(
        path=tmp_path / "app.yaml",
        root=tmp_path,
        runtime="python312",
        error_handlers=handlers,
    )


@pytest.fixture
def pages(tmp_path: Path) -> ErrorPages:
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "default.html").write_bytes(b"<p>default</p>")
    (tmp_path / "timeout.txt").write_bytes(b"too slow")
    return ErrorPages(
        _config(
            tmp_path,
            ErrorHandler(file="errors/default.html"),
            ErrorHandler(file="timeout.txt", error_code="timeout", mime_type="text/plain"),
            ErrorHandler(file="missing-but-unused.html", error_code="over_quota"),
        )
    )


@pytest.mark.parametrize(
    ("status", "timeout", "expected"),
    [
        (500, True, (b"too slow", "text/plain")),
        (500, False, (b"<p>default</p>", "text/html")),
        (404, False, (b"<p>default</p>", "text/html")),
        (503, False, (b"<p>default</p>", "text/html")),
    ],
    ids=["timeout-handler", "default-for-500", "default-for-404", "default-for-503"],
)
def test_err_2_handlers_replace_proxy_pages(
    pages: ErrorPages, status: int, timeout: bool, expected: tuple[bytes, str]
) -> None:
    assert pages.render(status, path="/x", timeout=timeout) == expected


def test_err_2_default_covers_deadline_without_timeout_handler(tmp_path: Path) -> None:
    (tmp_path / "d.html").write_bytes(b"d")
    pages = ErrorPages(_config(tmp_path, ErrorHandler(file="d.html")))
    assert pages.render(500, timeout=True) == (b"d", "text/html")


def test_err_2_timeout_handler_alone_leaves_other_pages_to_gfe(tmp_path: Path) -> None:
    (tmp_path / "t.html").write_bytes(b"t")
    pages = ErrorPages(_config(tmp_path, ErrorHandler(file="t.html", error_code="timeout")))
    assert pages.render(500, timeout=True) == (b"t", "text/html")
    assert pages.render(404, path="/x") == (gfe_error_page(404, path="/x"), GFE_CONTENT_TYPE)


def test_err_2_without_handlers_gfe_page(tmp_path: Path) -> None:
    pages = ErrorPages(_config(tmp_path))
    assert pages.render(502) == (gfe_error_page(502), GFE_CONTENT_TYPE)
    assert pages.render(500, timeout=True) == (gfe_error_page(500), GFE_CONTENT_TYPE)


def test_err_2_files_read_once_at_construction(tmp_path: Path) -> None:
    page = tmp_path / "d.html"
    page.write_bytes(b"first")
    pages = ErrorPages(_config(tmp_path, ErrorHandler(file="d.html")))
    page.write_bytes(b"second")
    assert pages.render(500) == (b"first", "text/html")


def test_err_2_unreadable_handler_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ErrorPages(_config(tmp_path, ErrorHandler(file="nope.html")))
    assert "nope.html" in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "app.yaml"))
