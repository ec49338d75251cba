"""Routing (SPEC ROUTE-1…4): ERE translation, first match wins, static_dir prefixes, /_ah/."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_proxy.config import Handler
from gfe_proxy.routing import RouteMatch, Router, reserved, route_path, translate_pattern

# -- ROUTE-1: POSIX ERE → Python re -----------------------------------------------------------

ERE_CASES = [
    # (id, ere, path, matches)
    ("literal", "/index\\.html", "/index.html", True),
    ("escaped-dot-is-literal", "/index\\.html", "/indexxhtml", False),
    ("dot-any", "/a.c", "/abc", True),
    ("dot-matches-newline", "/a.c", "/a\nc", True),
    ("dollar-is-end-only", "/a$", "/a\n", False),
    ("caret-and-dollar-carried", "^/a/.*$", "/a/b", True),
    ("whole-path-only", "/a", "/ab", False),
    ("alpha-class", "/[[:alpha:]]+", "/abcXYZ", True),
    ("alpha-class-rejects-digit", "/[[:alpha:]]+", "/ab1", False),
    ("digit-class", "/[[:digit:]]{3}", "/123", True),
    ("alnum-with-literal", "/[[:alnum:]_-]+", "/a_b-9", True),
    ("upper-lower", "/[[:upper:]][[:lower:]]", "/Ab", True),
    ("space-class", "/a[[:space:]]b", "/a\tb", True),
    ("punct-class", "/[[:punct:]]", "/[", True),
    ("xdigit-class", "/[[:xdigit:]]+", "/deadBEEF", True),
    ("negated-class", "/[^[:digit:]]", "/x", True),
    ("negated-class-rejects", "/[^[:digit:]]", "/7", False),
    ("perl-w", "/\\w+", "/abc_1", True),
    ("perl-w-is-ascii", "/\\w+", "/é", False),
    ("perl-W", "/\\W", "/-", True),
    ("perl-d", "/\\d+", "/42", True),
    ("perl-D", "/\\D", "/x", True),
    ("perl-s", "/a\\sb", "/a b", True),
    ("perl-S", "/\\S", "/x", True),
    ("perl-in-bracket", "/[\\w.-]+", "/a.b-c", True),
    ("negated-perl-in-bracket", "/[\\W_]+", "/_-", True),
    ("negated-perl-in-bracket-rejects", "/[\\W_]", "/a", False),
    ("negated-bracket-of-negated-perl", "/[^\\W_]+", "/ab9", True),
    ("negated-bracket-of-negated-perl-rejects", "/[^\\W_]", "/_", False),
    ("bracket-close-first", "/[]a]+", "/]a", True),
    ("negated-close-first", "/[^]a]", "/]", False),
    ("dash-last-literal", "/[a-]+", "/a-", True),
    ("range", "/[a-c]+", "/abc", True),
    ("range-excludes", "/[a-c]", "/d", False),
    ("bracket-specials-literal", "/[.*+?|&~]+", "/.*+?|&~", True),
    ("nested-bracket-literal", "/[[a]", "/[", True),
    ("unmatched-close-paren-literal", "/a)", "/a)", True),
    ("brace-literal", "/{id}", "/{id}", True),
    ("interval", "/a{2,3}", "/aaa", True),
    ("interval-too-many", "/a{2,3}", "/aaaa", False),
    ("interval-open-low", "/a{,2}", "/", True),
    ("interval-open-high", "/a{2,}", "/aaaaa", True),
    ("leading-star-literal", "*", "*", True),
    ("stacked-quantifiers", "/a**", "/aaa", True),
    ("stacked-plus", "/a+*", "/", True),
    ("lazy-is-python", "/(.*?)x", "/axbx", True),
    ("alternation-whole", "/a|/b", "/b", True),
    ("alternation-not-prefix", "/a|/b", "/ab", False),
    ("group-alternation", "/(gif|png)", "/png", True),
    ("backreference", "/(a+)-\\1", "/aa-aa", True),
    ("backreference-mismatch", "/(a+)-\\1", "/aa-a", False),
    ("python-noncapturing", "/(?:a|b)c", "/bc", True),
    ("python-named-group", "/(?P<n>x)", "/x", True),
    ("python-lookahead", "/(?!_ah/).*", "/_ah/x", False),
    ("python-inline-flag", "(?i)/abc", "/ABC", True),
    ("not-an-extension-reads-as-ere", "/(?Q)", "/?Q", True),
    ("escaped-slash", "\\/a", "/a", True),
    ("hex-escape", "/\\x41", "/A", True),
    ("gnu-word-boundaries", "/\\<ab\\>", "/ab", True),
]


@pytest.mark.parametrize(
    ("ere", "path", "matches"), [c[1:] for c in ERE_CASES], ids=[c[0] for c in ERE_CASES]
)
def test_route_1_ere_translation(ere: str, path: str, matches: bool) -> None:
    assert (re.fullmatch(translate_pattern(ere), path) is not None) is matches


INVALID_ERES = [
    # (id, ere, message)
    ("unterminated-bracket", "/[abc", "unterminated ["),
    ("unterminated-group", "/(a", "unmatched ("),
    ("unknown-class", "/[[:nope:]]", "unknown character class"),
    ("collating-element", "/[[.a.]]", "collating elements"),
    ("equivalence-class", "/[[=a=]]", "equivalence classes"),
    ("reversed-interval", "/a{3,2}", "minimum greater than maximum"),
    ("reversed-range", "/[z-a]", "invalid range"),
    ("trailing-backslash", "/a\\", "trailing backslash"),
    ("backreference-to-missing-group", "/\\1", "back-reference"),
    ("range-ending-in-class", "/[a-\\d]", "range cannot end in a class"),
]


@pytest.mark.parametrize(
    ("ere", "message"), [c[1:] for c in INVALID_ERES], ids=[c[0] for c in INVALID_ERES]
)
def test_route_1_invalid_ere_raises_value_error(ere: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        translate_pattern(ere)


def test_route_1_router_rejects_bad_pattern() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        Router.from_handlers([Handler(url="/[x", script="main.app")])


# -- ROUTE-1/2/3: matching ----------------------------------------------------------------------

HANDLERS = (
    Handler(url="/", script="home.app"),
    Handler(url="/index\\.html", script="home.app"),
    Handler(url="/stylesheets", static_dir="stylesheets"),
    Handler(url="/(.*\\.(gif|png|jpg))$", static_files="static/\\1", upload="static/.*"),
    Handler(url="/browse/(books|videos|tools)", script="\\1.catalog.app"),
    Handler(url="/admin/.*", script="admin.app", login="admin"),
    Handler(url="/.*", script="not_found.app"),
)

MATCH_CASES = [
    # (id, path, index, script, file)
    ("root", "/", 0, "home.app", None),
    ("index-html", "/index.html", 1, "home.app", None),
    ("static-dir", "/stylesheets/site.css", 2, None, "stylesheets/site.css"),
    ("static-dir-nested", "/stylesheets/a/b.css", 2, None, "stylesheets/a/b.css"),
    ("static-dir-trailing-slash-empty-rest", "/stylesheets/", 2, None, "stylesheets/"),
    ("static-dir-bare-prefix-falls-through", "/stylesheets", 6, "not_found.app", None),
    ("static-dir-longer-name-falls-through", "/stylesheetsx/a", 6, "not_found.app", None),
    ("static-files-backref", "/img/logo.png", 3, None, "static/img/logo.png"),
    ("static-files-first-match-wins-over-dir", "/stylesheets/x.png", 2, None, "stylesheets/x.png"),
    ("script-backref", "/browse/tools", 4, "tools.catalog.app", None),
    ("script-no-partial", "/browse/toolsx", 6, "not_found.app", None),
    ("admin", "/admin/users", 5, "admin.app", None),
    ("catch-all", "/anything/else", 6, "not_found.app", None),
]


@pytest.mark.parametrize(
    ("path", "index", "script", "file"),
    [c[1:] for c in MATCH_CASES],
    ids=[c[0] for c in MATCH_CASES],
)
def test_route_1_first_match_wins(
    path: str, index: int, script: str | None, file: str | None
) -> None:
    m = Router.from_handlers(HANDLERS).match(path)
    assert m == RouteMatch(handler=HANDLERS[index], index=index, script=script, file=file)


def test_route_1_patterns_lists_handlers_in_match_order() -> None:
    router = Router.from_handlers(HANDLERS[1:3])
    assert router.patterns() == (
        (HANDLERS[1], "/index\\.html"),
        (HANDLERS[2], "(?:/stylesheets)/((?s:.)*)"),
    )
    assert len(router) == 2


def test_route_3_no_handler_matches_is_none() -> None:
    router = Router.from_handlers(HANDLERS[:5])
    assert router.match("/nothing") is None
    assert router.match("") is None
    assert Router.from_handlers([]).match("/") is None


STATIC_DIR_CASES = [
    # (id, url, static_dir, path, file or None)
    ("plain", "/css", "css", "/css/a.css", "css/a.css"),
    ("url-trailing-slash", "/css/", "css", "/css/a.css", "css/a.css"),
    ("dir-trailing-slash", "/css", "css/", "/css/a.css", "css/a.css"),
    ("dir-dot-slash", "/css", "./static/css", "/css/a.css", "static/css/a.css"),
    ("dir-is-root", "/files", ".", "/files/a.txt", "a.txt"),
    ("url-is-root", "/", "public", "/a/b.txt", "public/a/b.txt"),
    ("url-regex", "/v[0-9]+/css", "css", "/v12/css/a.css", "css/a.css"),
    ("bare-prefix", "/css", "css", "/css", None),
]


@pytest.mark.parametrize(
    ("url", "static_dir", "path", "file"),
    [c[1:] for c in STATIC_DIR_CASES],
    ids=[c[0] for c in STATIC_DIR_CASES],
)
def test_route_2_static_dir_url_is_a_prefix(
    url: str, static_dir: str, path: str, file: str | None
) -> None:
    m = Router.from_handlers([Handler(url=url, static_dir=static_dir)]).match(path)
    assert (m.file if m else None) == file


def test_route_1_absent_group_substitutes_empty() -> None:
    h = Handler(url="/(a)?b(c)?", script="s\\1\\2\\3.app")
    m = Router.from_handlers([h]).match("/bc")
    assert m is not None
    assert m.script == "sc.app"


def test_route_1_static_files_dot_slash_template() -> None:
    h = Handler(url="/(.*)", static_files="./static/\\1", upload="static/.*")
    m = Router.from_handlers([h]).match("/a.txt")
    assert m is not None
    assert m.file == "static/a.txt"


def test_route_1_falls_back_to_loop_when_patterns_cannot_combine() -> None:
    # Duplicate group names and an inline global flag cannot share one regex.
    handlers = [
        Handler(url="/(?P<x>a)", script="one.app"),
        Handler(url="/(?P<x>b)", script="two.app"),
        Handler(url="(?i)/c", script="three.app"),
    ]
    router = Router.from_handlers(handlers)
    assert [getattr(router.match(p), "index", None) for p in ("/a", "/b", "/C", "/d")] == [
        0,
        1,
        2,
        None,
    ]


def test_route_1_back_references_past_99_groups_still_match() -> None:
    many = [Handler(url="/g" + "(x)" * 30 + f"/{i}", script="m.app") for i in range(4)]
    last = Handler(url="/(y+)-\\1", script="b\\1.app")
    m = Router.from_handlers([*many, last]).match("/yy-yy")
    assert m is not None
    assert (m.index, m.script) == (4, "byy.app")


# Reference semantics: try each handler alone, in order (ROUTE-1 read literally).
def _reference(handlers: list[Handler], path: str) -> int | None:
    for i, h in enumerate(handlers):
        pattern = translate_pattern(h.url)
        if h.static_dir is not None:
            pattern = f"(?:{pattern}){'' if h.url.endswith('/') else '/'}(?s:.*)"
        if re.fullmatch(pattern, path):
            return i
    return None


POOL = [
    Handler(url="/", script="a.app"),
    Handler(url="/api/.*", script="a.app"),
    Handler(url="/api/v1/(.*)", script="\\1.app"),
    Handler(url="/api/?", script="a.app"),
    Handler(url="/api", static_dir="api"),
    Handler(url="/static", static_dir="static"),
    Handler(url="/(.*\\.png)$", static_files="s/\\1", upload="s/.*"),
    Handler(url="/a|/api/x", script="a.app"),
    Handler(url="^/ap[i]/y", script="a.app"),
    Handler(url="/(api)/(z)\\2", script="a.app"),
    Handler(url="/api\\.v2/.*", script="a.app"),
    Handler(url="(?i)/API/u", script="a.app"),
    Handler(url="/.*", script="a.app"),
]
SEGMENTS = ["", "api", "API", "api.v2", "static", "v1", "x", "y", "z", "zz", "u", "a.png"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(POOL))), min_size=0, max_size=8),
    st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=4),
)
def test_route_1_router_agrees_with_one_by_one_matching(picks: list[int], segs: list[str]) -> None:
    handlers = [POOL[i] for i in picks]
    path = "/" + "/".join(segs)
    m = Router.from_handlers(handlers).match(path)
    assert (m.index if m else None) == _reference(handlers, path)


@given(st.text())
def test_route_1_match_never_raises(path: str) -> None:
    router = Router.from_handlers(HANDLERS)
    m = router.match(path)
    assert m is None or isinstance(m, RouteMatch)
    assert router.match("/" + path) is not None  # the catch-all takes everything


# A generator of valid EREs (no collating elements or equivalence classes).
_LITERALS = st.sampled_from([*"abz09/_-~%é ", "\\.", "\\*", "\\[", "\\(", "\\)", "\\\\"])
_CLASSES = st.sampled_from(
    [
        "[[:alpha:]]",
        "[[:digit:]]",
        "[^[:space:]]",
        "\\w",
        "\\W",
        "\\d",
        "\\D",
        "\\s",
        "\\S",
        "[a-z0-9._-]",
        "[]x]",
        "[^]x-]",
        "[\\w.]",
        "[\\W_]",
        "[^\\D5]",
        ".",
    ]
)
_ATOMS = st.one_of(_LITERALS, _CLASSES, st.sampled_from(["^", "$", "{", "}", ")"]))
_QUANTS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "**", "+?"])


def _ere(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    piece = st.tuples(children, _QUANTS).map("".join)
    branch = st.lists(piece, min_size=0, max_size=4).map("".join)
    alternation = st.lists(branch, min_size=1, max_size=3).map("|".join)
    return st.one_of(alternation, alternation.map(lambda s: f"({s})"))


EREs = st.recursive(_ATOMS, _ere, max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(EREs)
def test_route_1_translated_valid_ere_always_compiles(ere: str) -> None:
    # Compiling only: nested quantifiers backtrack exponentially in Python's engine, as they
    # would for the same pattern written directly in Python.
    assert isinstance(re.compile(translate_pattern(ere)), re.Pattern)


# -- ROUTE-4: reserved /_ah/ paths ------------------------------------------------------------

RESERVED_CASES = [
    ("login", "/_ah/login", "login"),
    ("logout", "/_ah/logout", "logout"),
    ("warmup", "/_ah/warmup", "blocked"),
    ("start", "/_ah/start", "blocked"),
    ("stop", "/_ah/stop", "blocked"),
    ("below-stop", "/_ah/stop/now", "blocked"),
    ("lookalike-not-blocked", "/_ah/startx", None),
    ("login-subpath-not-ours", "/_ah/login/x", None),
    ("other-ah-routed", "/_ah/mail/x", None),
    ("not-ah", "/ah/warmup", None),
    ("root", "/", None),
]


@pytest.mark.parametrize(
    ("path", "kind"), [c[1:] for c in RESERVED_CASES], ids=[c[0] for c in RESERVED_CASES]
)
def test_route_4_reserved_paths(path: str, kind: str | None) -> None:
    assert reserved(path) == kind


ROUTE_PATH_CASES = [
    ("plain", "/a/b", "/a/b"),
    ("decodes-unreserved", "/%61dmin/x", "/admin/x"),
    ("decodes-space", "/a%20b", "/a b"),
    ("keeps-encoded-slash", "/a%2fb%2Fc", "/a%2Fb%2Fc"),
    ("decodes-dots", "/s/%2e%2e/x", "/s/../x"),
    ("decodes-utf8", "/%C3%A9", "/é"),
    ("bad-utf8-replaced", "/%ff", "/\ufffd"),
]


@pytest.mark.parametrize(
    ("raw", "path"), [c[1:] for c in ROUTE_PATH_CASES], ids=[c[0] for c in ROUTE_PATH_CASES]
)
def test_route_1_route_path_decodes_all_but_slash(raw: str, path: str) -> None:
    assert route_path(raw) == path


def test_route_1_encoded_path_cannot_dodge_admin_handler() -> None:
    # Matching the decoded path keeps `login: admin` on /admin/ whatever the spelling.
    m = Router.from_handlers(HANDLERS).match(route_path("/%61dmin/users"))
    assert m is not None
    assert m.index == 5
