"""SPEC CFG-1…CFG-5 and ROUTE-5 (dispatch.yaml): the loader in gfe_proxy/appyaml.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfe_proxy.appyaml import (
    APP_ELEMENTS,
    HANDLER_KEYS,
    IGNORED_ELEMENTS,
    load_app,
    load_dispatch,
)
from gfe_proxy.config import (
    DEFAULT_SKIP_FILES,
    AppConfig,
    AutomaticScaling,
    BasicScaling,
    ManualScaling,
    Position,
)
from gfe_proxy.errors import ConfigError

Found = tuple[str, int, int, str]  # (file name, line, column, message)


def write(directory: Path, text: str, name: str = "app.yaml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return path


def load(directory: Path, text: str) -> AppConfig:
    write(directory, text)
    return load_app(directory)


def problems(directory: Path, text: str | None = None) -> list[Found]:
    if text is not None:
        write(directory, text)
    with pytest.raises(ConfigError) as info:
        load_app(directory)
    return [(Path(p.file).name, p.line, p.column, p.message) for p in info.value.problems]


def assert_problem(found: list[Found], line: int, column: int, fragment: str,
                   file: str = "app.yaml") -> None:
    hits = [f for f in found if f[:3] == (file, line, column) and fragment in f[3]]
    assert hits, f"no {file}:{line}:{column} problem containing {fragment!r} in {found}"


# --------------------------------------------------------------------------- CFG-1


def test_cfg_1_problem_str_is_file_line_col_message(tmp_path: Path) -> None:
    write(tmp_path, "runtime: python312\nservce: api\n")
    with pytest.raises(ConfigError) as info:
        load_app(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}/app.yaml:2:1: unknown element 'servce' in app.yaml; "
        "did you mean 'service'?"
    )
    assert (info.value.line, info.value.column) == (2, 1)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("runtime: python312\nhandlres: []\n", 2, 1, "did you mean 'handlers'?"),
        ("runtime: python312\nhandlers:\n- url: /\n  scirpt: auto\n", 4, 3,
         "unknown element 'scirpt' in a handler; did you mean 'script'?"),
        ("runtime: python312\nautomatic_scaling:\n  max_instance: 3\n", 3, 3,
         "did you mean 'max_instances'?"),
        ("runtime: python312\nbasic_scaling:\n  max_instances: 1\n  idle: 5m\n", 4, 3,
         "unknown element 'idle' in basic_scaling"),
        ("runtime: python312\nerror_handlers:\n- fiel: x.html\n", 3, 3,
         "did you mean 'file'?"),
        ("runtime: python312\n42: x\n", 2, 1, "unknown element 42"),
        ("runtime: python312\n? [a]\n: x\n", 2, 3, "keys in app.yaml must be names, not a list"),
    ],
    ids=["top-level", "handler", "automatic-scaling", "basic-scaling", "error-handler",
         "number-key", "list-key"],
)
def test_cfg_1_unknown_keys_are_errors_with_suggestions(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    assert_problem(problems(tmp_path, text), line, column, fragment)


def test_cfg_1_unknown_key_far_from_any_has_no_suggestion(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, "runtime: python312\nzzzqqq: 1\n")
    assert found[3] == "unknown element 'zzzqqq' in app.yaml"


REFERENCE_APP = r"""
runtime: python27
api_version: 1
threadsafe: true
application: my-project
module: my-service
version: v2
instance_class: B8
auto_id_policy: default
default_expiration: "4d 5h"
env_variables:
  DJANGO_SETTINGS_MODULE: 'myapp.settings'
builtins:
- deferred: on
- appstats: on
inbound_services:
- mail
- warmup
libraries:
- name: PIL
  version: "1.1.7"
- name: webob
  version: "latest"
skip_files:
- ^(.*/)?#.*#$
- ^(.*/)?.*\.bak$
basic_scaling:
  max_instances: 11
  idle_timeout: 10m
error_handlers:
- file: default_error.html
- error_code: over_quota
  file: over_quota.html
handlers:
- url: /
  script: home.app
- url: /index\.html
  script: home.app
- url: /stylesheets
  static_dir: stylesheets
- url: /(.*\.(gif|png|jpg))$
  static_files: static/\1
  upload: static/.*\.(gif|png|jpg)$
  application_readable: true
- url: /images
  static_dir: static/images
  http_headers:
    Access-Control-Allow-Origin: http://mygame.appspot.com
- url: /admin/.*
  script: admin.app
  login: admin
- url: /youraccount/.*
  script: accounts.app
  login: required
  secure: always
  redirect_http_response_code: 301
- url: /secure_api/.*
  script: api_handler.app
  login: required
  auth_fail_action: unauthorized
- url: /browse/(books|videos|tools)
  script: \1.catalog.app
- url: /.*
  script: not_found.app
"""


def test_cfg_1_every_reference_element_parses(tmp_path: Path) -> None:
    (tmp_path / "default_error.html").write_text("oops")
    (tmp_path / "over_quota.html").write_text("quota")
    config = load(tmp_path, REFERENCE_APP)
    assert (config.runtime, config.api_version, config.threadsafe) == ("python27", "1", True)
    assert (config.service, config.version, config.application) == (
        "my-service", "v2", "my-project")
    assert config.instance_class == "B8"
    assert config.default_expiration == 363600.0
    assert config.env_variables == (("DJANGO_SETTINGS_MODULE", "myapp.settings"),)
    assert config.inbound_services == ("mail", "warmup")
    assert config.skip_files == (r"^(.*/)?#.*#$", r"^(.*/)?.*\.bak$")
    assert config.scaling == BasicScaling(max_instances=11, idle_timeout=600.0)
    assert [(e.error_code, e.file) for e in config.error_handlers] == [
        ("default", "default_error.html"), ("over_quota", "over_quota.html")]
    assert len(config.handlers) == 10
    assert config.handlers[3].static_files == r"static/\1"
    assert config.handlers[3].application_readable is True
    assert config.handlers[4].http_headers == (
        ("Access-Control-Allow-Origin", "http://mygame.appspot.com"),)
    assert config.handlers[6].secure == "always"
    assert config.handlers[6].redirect_http_response_code == 301
    assert config.handlers[7].auth_fail_action == "unauthorized"
    assert config.path == tmp_path.resolve() / "app.yaml"
    assert config.root == tmp_path.resolve()
    assert [name for name, _pos in config.ignored] == ["auto_id_policy", "builtins",
                                                       "libraries"]


def test_cfg_1_ignored_elements_carry_positions(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        runtime: python312
        vpc_access_connector:
          name: projects/p/locations/r/connectors/c
        app_engine_apis: true
        handlers:
        - url: /.*
          script: auto
          api_endpoint: true
        """)
    assert config.ignored == (
        ("vpc_access_connector", Position(file=f"{tmp_path}/app.yaml", line=2, column=1)),
        ("app_engine_apis", Position(file=f"{tmp_path}/app.yaml", line=4, column=1)),
        ("api_endpoint", Position(file=f"{tmp_path}/app.yaml", line=8, column=3)),
    )


@pytest.mark.parametrize("element", sorted(IGNORED_ELEMENTS))
def test_cfg_1_production_only_elements_are_accepted(tmp_path: Path, element: str) -> None:
    value = "[]" if element in ("builtins", "libraries") else "x"
    config = load(tmp_path, f"runtime: python312\n{element}: {value}\n")
    assert [name for name, _pos in config.ignored] == [element]


def test_cfg_1_module_is_the_older_spelling_of_service(tmp_path: Path) -> None:
    assert load(tmp_path, "runtime: python312\nmodule: api\n").service == "api"
    assert load(tmp_path, "runtime: python312\n").service == "default"
    assert_problem(problems(tmp_path, "runtime: python312\nservice: a\nmodule: a\n"), 3, 1,
                   "not both")


def test_cfg_1_handler_positions_and_values(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        runtime: python312
        handlers:
        - url: /static
          static_dir: public
          expiration: 1h
          mime_type: text/plain
        -   script: auto
            url: /.*
        """)
    first, second = config.handlers
    assert first.position == Position(file=f"{tmp_path}/app.yaml", line=3, column=3)
    assert (first.kind, first.static_dir, first.expiration, first.mime_type) == (
        "static_dir", "public", 3600.0, "text/plain")
    assert second.position == Position(file=f"{tmp_path}/app.yaml", line=7, column=5)
    assert (second.kind, second.script, second.url) == ("script", "auto", "/.*")


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("runtime: python312\nhandlers: /x\n", 2, 11, "'handlers' must be a list, not a string"),
        ("runtime: python312\nhandlers:\n- /x\n", 3, 3, "a handler must be a mapping"),
        ("runtime: python312\nhandlers:\n- url: [/a]\n  script: auto\n", 3, 8,
         "'url' must be a string, not a list"),
        ("runtime: [python312]\n", 1, 10, "'runtime' must be a string, not a list"),
        ("runtime: python27\napi_version: 1\nthreadsafe: maybe\nhandlers:\n- url: /\n"
         "  script: a.app\n", 3, 13, "'threadsafe' must be true or false"),
        ("runtime: python312\nenv_variables: [A]\n", 2, 16, "must be a mapping"),
        ("runtime: python312\nenv_variables:\n  A: {b: 1}\n", 3, 6, "needs a string value"),
        ("runtime: python312\nautomatic_scaling:\n  max_instances: true\n", 3, 18,
         "must be a whole number"),
        ("runtime: python312\nautomatic_scaling:\n  min_instances: 1.5\n", 3, 18,
         "must be a whole number"),
        ("runtime: python312\nautomatic_scaling: 5\n", 2, 20, "must be a mapping"),
        ("runtime: python312\nhandlers:\n- url: /\n  static_dir: s\n  http_headers: [a]\n",
         5, 17, "must be a mapping"),
        ("runtime: python312\ninbound_services: warmup\n", 2, 19, "must be a list"),
        ("runtime: python312\nhandlers:\n- url: /\n  script:\n", 4, 3, "'script' has no value"),
        ("runtime: python312\nhandlers:\n- url: /\n  script: !custom x\n", 4, 11,
         "not a tagged or special value"),
        ("runtime: python312\nhandlers:\n- url: /\n  static_dir: s\n  http_headers:\n"
         "    X-A: [a]\n", 6, 10, "header 'X-A' needs a string value, not a list"),
        ("runtime: python312\nhandlers:\n- url: /\n  static_dir: s\n  http_headers:\n"
         "    X-A: \"a\\r\\nb\"\n", 6, 10, "header 'X-A' has control characters"),
    ],
    ids=["handlers-string", "handler-string", "url-list", "runtime-list", "bool-word",
         "env-list", "env-value-mapping", "int-bool", "int-float", "scaling-scalar",
         "headers-list", "inbound-string", "null-script", "tagged-value", "header-list",
         "header-crlf"],
)
def test_cfg_1_type_errors_are_problems(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    assert_problem(problems(tmp_path, text), line, column, fragment)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("runtime: python312\nhandlers:\n- url: /\n   script: auto\n", 4, 10,
         "mapping values are not allowed here"),
        ("runtime: python312\nruntime: python311\n", 2, 1, "duplicate key"),
        ("runtime: [python312\n", 2, 1, "invalid YAML"),
        ("runtime: python312\n---\nruntime: python311\n", 2, 1, "another document"),
        ("runtime: python312\nversion: \x07\n", 2, 10, "special characters"),
        ("runtime: python312\nversion: 2001-02-30\n", 1, 1, "day is out of range"),
    ],
    ids=["indentation", "duplicate-key", "unclosed-flow", "two-documents", "control-char",
         "impossible-date"],
)
def test_cfg_1_yaml_errors_become_config_errors_with_positions(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    assert_problem(problems(tmp_path, text), line, column, fragment)


def test_cfg_1_invalid_utf8_names_its_position(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_bytes(b"runtime: python312\nservice: a\xffb\n")
    assert_problem(problems(tmp_path), 2, 11, "not valid utf-8")


def test_cfg_1_utf16_with_bom_is_read(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_bytes("runtime: python312\nservice: api\n".encode("utf-16"))
    assert load_app(tmp_path).service == "api"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [("missing-dir", "file not found"), ("missing-dir/other.yaml", "file not found"),
     ("empty-dir", "file not found")],
    ids=["missing-directory", "missing-file", "directory-without-app-yaml"],
)
def test_cfg_1_missing_file_is_a_config_error_at_1_1(
    tmp_path: Path, target: str, fragment: str
) -> None:
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(ConfigError) as info:
        load_app(tmp_path / target)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (1, 1)
    assert fragment in problem.message
    expected = tmp_path / target / "app.yaml" if target == "empty-dir" else tmp_path / target
    assert problem.file == str(expected)


def test_cfg_1_a_yaml_file_path_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "runtime: python312\nservice: api\n", "api.yaml")
    config = load_app(str(tmp_path / "api.yaml"))
    assert (config.service, config.root) == ("api", tmp_path.resolve())
    assert config.path == tmp_path.resolve() / "api.yaml"


def test_cfg_1_a_symlinked_app_yaml_keeps_its_app_directory(tmp_path: Path) -> None:
    write(tmp_path, "runtime: python312\n", "shared/base.yaml")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.yaml").symlink_to(tmp_path / "shared" / "base.yaml")
    assert load_app(tmp_path / "app").root == (tmp_path / "app").resolve()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "app.yaml is empty"), ("- a\n- b\n", "a list, not a mapping"),
     ("python312\n", "a string, not a mapping")],
    ids=["empty", "list", "scalar"],
)
def test_cfg_1_document_must_be_a_mapping(tmp_path: Path, text: str, fragment: str) -> None:
    (found,) = problems(tmp_path, text)
    assert fragment in found[3]


def test_cfg_1_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        service: Bad_Name
        handlers:
        - url: /a
          script: auto
          secure: sometimes
        - url: /(b
          static_files: x
        automatic_scaling:
          max_concurrent_requests: 0
        """)
    assert [(line, column) for _f, line, column, _m in found] == [
        (1, 1), (1, 10), (5, 11), (6, 8), (7, 3), (9, 28)]
    assert "'runtime' is required" in found[0][3]


def test_cfg_1_scalars_convert_to_text(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        runtime: python312
        version: 2
        env_variables:
          PORT_HINT: 8081
          DEBUG: true
          RATIO: 0.5
        """)
    assert config.version == "2"
    assert config.env_variables == (("PORT_HINT", "8081"), ("DEBUG", "True"), ("RATIO", "0.5"))


# --------------------------------------------------------------------------- CFG-2

CFG_2_PROBLEMS = [
    ("handler_needs_a_kind", """\
        runtime: python312
        handlers:
        - url: /a
          secure: always
        """, 3, 3, "needs one of 'script', 'static_dir' or 'static_files'"),
    ("handler_has_exactly_one_kind", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          static_dir: s
        """, 5, 3, "has both 'script' and 'static_dir'"),
    ("handler_needs_url", """\
        runtime: python312
        handlers:
        - script: auto
        """, 3, 3, "handler has no 'url'"),
    ("static_files_requires_upload", r"""
        runtime: python312
        handlers:
        - url: /(.*)
          static_files: s/\1
        """, 4, 3, "needs an 'upload' regex"),
    ("upload_only_on_static_files", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          upload: x
        """, 5, 3, "'upload' is not allowed in a script handler"),
    ("static_dir_url_has_no_groups", """\
        runtime: python312
        handlers:
        - url: /(s)
          static_dir: s
        """, 3, 8, "may not have groups"),
    ("url_must_compile", """\
        runtime: python312
        handlers:
        - url: /(a
          script: auto
        """, 3, 8, "not a valid regular expression"),
    ("url_starts_with_slash", """\
        runtime: python312
        handlers:
        - url: .*
          script: auto
        """, 3, 8, "must start with '/'"),
    ("backreference_needs_a_group", r"""
        runtime: python312
        handlers:
        - url: /(.*)
          static_files: s/\2
          upload: s/.*
        """, 4, 17, r"refers to \2 but url has only 1 group"),
    ("upload_must_compile", """\
        runtime: python312
        handlers:
        - url: /(.*)
          static_files: s/x
          upload: s/(
        """, 5, 11, "upload 's/(' is not a valid regular expression"),
    ("secure_enum", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          secure: sometimes
        """, 5, 11, "must be one of optional, always, never"),
    ("login_enum", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          login: admn
        """, 5, 10, "did you mean 'admin'?"),
    ("auth_fail_action_enum", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          auth_fail_action: deny
        """, 5, 21, "must be one of redirect, unauthorized"),
    ("redirect_code_enum", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          redirect_http_response_code: 308
        """, 5, 32, "must be one of 301, 302, 303, 307"),
    ("mime_type_or_content_type", """\
        runtime: python312
        handlers:
        - url: /a
          static_dir: a
          mime_type: text/plain
          http_headers:
            content-type: text/html
        """, 7, 5, "not both"),
    *[
        (f"http_headers_may_not_set_{name.lower().replace('-', '_')}", f"""\
        runtime: python312
        handlers:
        - url: /a
          static_dir: a
          http_headers:
            X-Ok: fine
            {name}: value
        """, 7, 5, f"may not set '{name}'")
        for name in ("Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade",
                     "Content-Length", "Content-Encoding", "Date", "Server",
                     "X-AppEngine-Country", "x-appengine-user-email")
    ],
    ("http_headers_names_are_tokens", """\
        runtime: python312
        handlers:
        - url: /a
          static_dir: a
          http_headers:
            "Bad Name": v
        """, 6, 5, "not a valid header name"),
    ("at_most_one_scaling_element", """\
        runtime: python312
        automatic_scaling:
          max_instances: 2
        manual_scaling:
          instances: 1
        """, 4, 1, "only one scaling element"),
    ("env_variable_name_syntax", """\
        runtime: python312
        env_variables:
          OK_1: a
          1BAD: b
        """, 4, 3, "not a valid name"),
    ("env_variable_not_gae", """\
        runtime: python312
        env_variables:
          GAE_SERVICE: b
        """, 3, 3, "names starting with GAE are reserved"),
    *[
        (f"service_id_{label}", f"runtime: python312\nservice: {value}\n", 2, 10,
         "must be 1-63 lowercase letters")
        for label, value in (("uppercase", "Api"), ("underscore", "my_api"),
                             ("leading_dash", "-api"), ("trailing_dash", "api-"),
                             ("too_long", "a" * 64), ("empty", "''"))
    ],
    ("module_id_checked_like_service", "runtime: python312\nmodule: my_api\n", 2, 9,
     "service id 'my_api'"),
    ("version_id_charset", "runtime: python312\nversion: V1\n", 2, 10, "version id 'V1'"),
    *[
        (f"version_not_{label}", f"runtime: python312\nversion: {value}\n", 2, 10,
         "is reserved")
        for label, value in (("ah_prefix", "ah-builtin"), ("default", "default"),
                             ("latest", "latest"))
    ],
    ("gen1_requires_threadsafe", """\
        runtime: python27
        api_version: 1
        handlers:
        - url: /.*
          script: main.app
        """, 1, 10, "requires 'threadsafe: true' or 'threadsafe: false'"),
    ("gen1_threadsafe_forbids_cgi", """\
        runtime: python27
        api_version: 1
        threadsafe: true
        handlers:
        - url: /.*
          script: main.py
        """, 6, 11, "cannot be used with the CGI script 'main.py'"),
    ("gen1_requires_handlers", """\
        runtime: python27
        api_version: 1
        threadsafe: false
        """, 1, 10, "requires at least one handler"),
    ("too_many_handlers", "runtime: python312\nhandlers:\n"
     + "".join(f"- url: /h{i}\n  script: auto\n" for i in range(101)),
     203, 3, "101 handlers; at most 100"),
    ("error_handler_file_exists", """\
        runtime: python312
        error_handlers:
        - file: nope.html
        """, 3, 9, "not found"),
    ("error_handler_file_inside_app", """\
        runtime: python312
        error_handlers:
        - file: ../outside.html
        """, 3, 9, "outside the app directory"),
    ("error_handler_needs_file", """\
        runtime: python312
        error_handlers:
        - error_code: timeout
        """, 3, 3, "has no 'file'"),
    ("error_code_enum", """\
        runtime: python312
        error_handlers:
        - file: ok.html
          error_code: server_error
        """, 4, 15, "must be one of default, over_quota, dos_api_denial, timeout"),
    ("max_concurrent_requests_at_least_1", """\
        runtime: python312
        automatic_scaling:
          max_concurrent_requests: 0
        """, 3, 28, "between 1 and 1000"),
    ("max_concurrent_requests_at_most_1000", """\
        runtime: python312
        automatic_scaling:
          max_concurrent_requests: 1001
        """, 3, 28, "between 1 and 1000"),
    ("cpu_utilization_at_least_half", """\
        runtime: python312
        automatic_scaling:
          target_cpu_utilization: 0.4
        """, 3, 27, "between 0.5 and 0.95"),
    ("throughput_utilization_at_most_0_95", """\
        runtime: python312
        automatic_scaling:
          target_throughput_utilization: 0.96
        """, 3, 34, "between 0.5 and 0.95"),
    ("utilization_not_nan", """\
        runtime: python312
        automatic_scaling:
          target_cpu_utilization: .nan
        """, 3, 27, "between 0.5 and 0.95"),
    ("min_instances_not_above_max", """\
        runtime: python312
        automatic_scaling:
          min_instances: 5
          max_instances: 2
        """, 3, 18, "'min_instances' is greater than 'max_instances'"),
    ("basic_scaling_needs_max_instances", """\
        runtime: python312
        basic_scaling:
          idle_timeout: 5m
        """, 3, 3, "needs 'max_instances'"),
    ("manual_scaling_needs_instances", """\
        runtime: python312
        manual_scaling: {}
        """, 2, 17, "needs 'instances'"),
    ("instance_class_known", "runtime: python312\ninstance_class: F3\n", 2, 17,
     "must be one of F1, F2"),
    ("instance_class_matches_scaling", """\
        runtime: python312
        instance_class: B2
        """, 2, 17, "needs basic_scaling or manual_scaling"),
    ("inbound_service_known", """\
        runtime: python312
        inbound_services:
        - warmpu
        """, 3, 3, "did you mean 'warmup'?"),
    ("runtime_required", "service: api\n", 1, 1, "'runtime' is required"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [case[1:] for case in CFG_2_PROBLEMS],
    ids=[case[0] for case in CFG_2_PROBLEMS],
)
def test_cfg_2_validation(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    (tmp_path / "ok.html").write_text("ok")
    assert_problem(problems(tmp_path, text.lstrip("\n")), line, column, fragment)


CFG_2_ACCEPTED = [
    ("redirect_code_as_string", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          redirect_http_response_code: '303'
        """),
    ("redirect_code_307", """\
        runtime: python312
        handlers:
        - url: /a
          script: auto
          redirect_http_response_code: 307
        """),
    ("script_auto_in_gen2", """\
        runtime: python312
        handlers:
        - url: /.*
          script: auto
        """),
    ("gen1_threadsafe_false_allows_cgi", """\
        runtime: python27
        api_version: 1
        threadsafe: false
        handlers:
        - url: /.*
          script: main.py
        """),
    ("concurrency_and_utilization_bounds", """\
        runtime: python312
        automatic_scaling:
          max_concurrent_requests: 1000
          target_cpu_utilization: 0.5
          target_throughput_utilization: 0.95
        """),
    ("content_type_header_without_mime_type", """\
        runtime: python312
        handlers:
        - url: /a
          static_dir: a
          http_headers:
            Content-Type: text/plain
        """),
    ("yaml_1_1_booleans", """\
        runtime: python27
        api_version: 1
        threadsafe: yes
        handlers:
        - url: /.*
          script: main.app
        """),
    ("version_with_digits_and_dashes", "runtime: python312\nversion: 20240101t120000-a\n"),
]


@pytest.mark.parametrize("text", [c[1] for c in CFG_2_ACCEPTED], ids=[c[0] for c in CFG_2_ACCEPTED])
def test_cfg_2_accepts_valid_values(tmp_path: Path, text: str) -> None:
    load(tmp_path, text)


def test_cfg_2_redirect_code_becomes_an_int(tmp_path: Path) -> None:
    config = load(tmp_path, CFG_2_ACCEPTED[0][1])
    assert config.handlers[0].redirect_http_response_code == 303


@pytest.mark.parametrize(("size", "ok"), [(10 * 1024 - 1, True), (10 * 1024, False)],
                         ids=["just-under-10KB", "10KB"])
def test_cfg_2_error_handler_files_are_under_10_kb(tmp_path: Path, size: int, ok: bool) -> None:
    (tmp_path / "err.html").write_bytes(b"x" * size)
    text = "runtime: python312\nerror_handlers:\n- file: err.html\n  error_code: timeout\n"
    if ok:
        (handler,) = load(tmp_path, text).error_handlers
        assert (handler.file, handler.error_code, handler.mime_type) == (
            "err.html", "timeout", "text/html")
    else:
        assert_problem(problems(tmp_path, text), 3, 9, "it must be under 10240 bytes")


def test_cfg_2_gen2_without_handlers_forwards_everything_to_the_app(tmp_path: Path) -> None:
    (handler,) = load(tmp_path, "runtime: python312\n").handlers
    assert (handler.url, handler.script) == ("/.*", "auto")


def test_cfg_2_handler_defaults(tmp_path: Path) -> None:
    (handler,) = load(tmp_path, "runtime: python312\nhandlers:\n- url: /\n  script: auto\n"
                      ).handlers
    assert (handler.secure, handler.login, handler.auth_fail_action) == (
        "optional", "optional", "redirect")
    assert handler.redirect_http_response_code == 302
    assert handler.expiration is None


# --------------------------------------------------------------------------- CFG-3


def test_cfg_3_durations_become_seconds(tmp_path: Path) -> None:
    config = load(tmp_path, """\
        runtime: python312
        default_expiration: "4d 5h"
        handlers:
        - url: /s
          static_dir: s
          expiration: 90
        automatic_scaling:
          min_pending_latency: 30ms
          max_pending_latency: automatic
          max_idle_instances: automatic
          min_idle_instances: 2
          max_instances: 0
        """)
    assert config.default_expiration == 363600.0
    assert config.handlers[0].expiration == 90.0
    assert config.scaling == AutomaticScaling(min_pending_latency=0.03, min_idle_instances=2)


def test_cfg_3_basic_idle_timeout_defaults_to_5_minutes(tmp_path: Path) -> None:
    config = load(tmp_path, "runtime: python312\nbasic_scaling:\n  max_instances: 2\n")
    assert config.scaling == BasicScaling(max_instances=2, idle_timeout=300.0)


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("runtime: python312\ndefault_expiration: 4d5h\n", 2, 21, "'default_expiration'"),
        ("runtime: python312\nhandlers:\n- url: /s\n  static_dir: s\n  expiration: 1w\n",
         5, 15, "term '1w'"),
        ("runtime: python312\nautomatic_scaling:\n  max_pending_latency: 30\n", 3, 24,
         "invalid latency '30'"),
        ("runtime: python312\nbasic_scaling:\n  max_instances: 1\n  idle_timeout: 1h\n",
         4, 17, "invalid idle_timeout '1h'"),
        ("runtime: python312\nautomatic_scaling:\n  min_pending_latency: 2s\n"
         "  max_pending_latency: 1s\n", 3, 24, "is greater than 'max_pending_latency'"),
    ],
    ids=["expiration-no-space", "expiration-weeks", "latency-bare", "idle-hours",
         "latency-order"],
)
def test_cfg_3_bad_durations_are_problems(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    assert_problem(problems(tmp_path, text), line, column, fragment)


# --------------------------------------------------------------------------- CFG-4


def test_cfg_4_included_handlers_follow_in_include_order(tmp_path: Path) -> None:
    write(tmp_path, "handlers:\n- url: /one\n  script: auto\n", "lib/one.yaml")
    write(tmp_path, """\
        handlers:
        - url: /two
          script: auto
        includes:
        - nested.yaml
        """, "two/include.yaml")
    write(tmp_path, "handlers:\n- url: /nested\n  script: auto\n", "two/nested.yaml")
    config = load(tmp_path, """\
        runtime: python312
        includes:
        - lib/one.yaml
        - two
        handlers:
        - url: /own
          script: auto
        """)
    assert [h.url for h in config.handlers] == ["/own", "/one", "/two", "/nested"]
    assert config.handlers[3].position == Position(
        file=f"{tmp_path}/two/nested.yaml", line=2, column=3)


def test_cfg_4_includes_resolve_next_to_the_includer_then_in_the_app(tmp_path: Path) -> None:
    write(tmp_path, "handlers:\n- url: /lib-local\n  script: auto\n", "lib/common.yaml")
    write(tmp_path, "handlers:\n- url: /app-level\n  script: auto\n", "common.yaml")
    write(tmp_path, "handlers:\n- url: /shared\n  script: auto\n", "shared.yaml")
    write(tmp_path, "includes:\n- common.yaml\n- shared.yaml\n", "lib/include.yaml")
    config = load(tmp_path, "runtime: python312\nincludes:\n- lib\n")
    assert [h.url for h in config.handlers] == ["/lib-local", "/shared"]


def test_cfg_4_skip_files_and_env_variables_merge(tmp_path: Path) -> None:
    write(tmp_path, """\
        skip_files: ^tmp/.*$
        env_variables:
          SHARED: from-include
          EXTRA: x
        """, "inc.yaml")
    config = load(tmp_path, """\
        runtime: python312
        includes: [inc.yaml]
        env_variables:
          SHARED: from-app
        """)
    assert config.skip_files == (*DEFAULT_SKIP_FILES, "^tmp/.*$")
    assert config.env_variables == (("SHARED", "from-app"), ("EXTRA", "x"))


def test_cfg_4_include_cycle_is_a_problem(tmp_path: Path) -> None:
    write(tmp_path, "includes:\n- b.yaml\n", "a.yaml")
    write(tmp_path, "handlers: []\nincludes:\n- a.yaml\n", "b.yaml")
    found = problems(tmp_path, "runtime: python312\nincludes:\n- a.yaml\n")
    assert_problem(found, 3, 3, f"include cycle: {tmp_path}/a.yaml -> {tmp_path}/b.yaml -> "
                   f"{tmp_path}/a.yaml", file="b.yaml")


def test_cfg_4_including_the_app_file_is_a_cycle(tmp_path: Path) -> None:
    found = problems(tmp_path, "runtime: python312\nincludes:\n- app.yaml\n")
    assert_problem(found, 3, 3, "include cycle")


def test_cfg_4_a_file_included_twice_counts_once(tmp_path: Path) -> None:
    write(tmp_path, "handlers:\n- url: /common\n  script: auto\n", "common.yaml")
    write(tmp_path, "includes: [common.yaml]\n", "a.yaml")
    config = load(tmp_path, "runtime: python312\nincludes: [common.yaml, a.yaml]\n")
    assert [h.url for h in config.handlers] == ["/common"]


def test_cfg_4_problems_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, """\
        handlers:
        - url: /x
          script: auto
          secure: sometimes
        runtime: python27
        """, "lib/inc.yaml")
    found = problems(tmp_path, "runtime: python312\nincludes:\n- lib/inc.yaml\n- missing.yaml\n")
    assert found == [
        ("app.yaml", 4, 3, "include 'missing.yaml' not found next to "
         f"{tmp_path}/app.yaml nor in the app directory"),
        ("inc.yaml", 4, 11, "'secure' must be one of optional, always, never; got 'sometimes'"),
        ("inc.yaml", 5, 1, "unknown element 'runtime' in an included file"),
    ]


def test_cfg_4_yaml_error_in_an_included_file_names_it(tmp_path: Path) -> None:
    write(tmp_path, "handlers: [\n", "inc.yaml")
    found = problems(tmp_path, "runtime: python312\nincludes: [inc.yaml]\n")
    assert [f[:3] for f in found] == [("inc.yaml", 2, 1)]


def test_cfg_4_handler_count_includes_included_handlers(tmp_path: Path) -> None:
    write(tmp_path, "handlers:\n" + "".join(f"- url: /i{i}\n  script: auto\n"
                                            for i in range(60)), "inc.yaml")
    own = "".join(f"- url: /o{i}\n  script: auto\n" for i in range(41))
    found = problems(tmp_path, f"runtime: python312\nincludes: [inc.yaml]\nhandlers:\n{own}")
    assert_problem(found, 120, 3, "101 handlers", file="inc.yaml")


def test_cfg_4_manual_scaling_from_an_include(tmp_path: Path) -> None:
    write(tmp_path, "manual_scaling:\n  instances: 3\n", "inc.yaml")
    config = load(tmp_path, "runtime: python312\nincludes: [inc.yaml]\n")
    assert config.scaling == ManualScaling(instances=3)


# --------------------------------------------------------------------------- CFG-5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", DEFAULT_SKIP_FILES),
        ("skip_files: ^logs/.*$\n", ("^logs/.*$",)),
        ("skip_files:\n- ^(.*/)?\\..*$\n- logs/\n", (r"^(.*/)?\..*$", "logs/")),
        ("skip_files: []\n", ()),
    ],
    ids=["default", "one-regex", "list", "empty-list"],
)
def test_cfg_5_skip_files(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    assert load(tmp_path, f"runtime: python312\n{text}").skip_files == expected


def test_cfg_5_skip_files_regexes_must_compile(tmp_path: Path) -> None:
    found = problems(tmp_path, "runtime: python312\nskip_files:\n- ok\n- (bad\n- 3\n")
    assert_problem(found, 4, 3, "skip_files entry '(bad' is not a valid regular expression")
    assert len(found) == 1  # `3` is read as the regex "3"


# --------------------------------------------------------------------------- ROUTE-5


def dispatch_problems(directory: Path, text: str) -> list[Found]:
    write(directory, text, "dispatch.yaml")
    with pytest.raises(ConfigError) as info:
        load_dispatch(directory)
    return [(Path(p.file).name, p.line, p.column, p.message) for p in info.value.problems]


def test_route_5_dispatch_rules_load_in_order(tmp_path: Path) -> None:
    write(tmp_path, """\
        dispatch:
        - url: "*/favicon.ico"
          service: default
        - url: "simple-sample.appspot.com/"
          service: default
        - url: "*/mobile/*"
          service: mobile-frontend
        - url: "*.example.com/api"
          service: api
        """, "dispatch.yaml")
    rules = load_dispatch(tmp_path / "dispatch.yaml")
    assert [(r.url, r.service) for r in rules] == [
        ("*/favicon.ico", "default"), ("simple-sample.appspot.com/", "default"),
        ("*/mobile/*", "mobile-frontend"), ("*.example.com/api", "api")]
    assert rules[2].position == Position(file=f"{tmp_path}/dispatch.yaml", line=6, column=3)
    assert load_dispatch(tmp_path) == rules


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ('dispatch:\n- url: "a*.com/"\n  service: x\n', 2, 8, "'*' only at its start"),
        ('dispatch:\n- url: "*/a*/b"\n  service: x\n', 2, 8, "'*' may only end the path"),
        ('dispatch:\n- url: "/api/*"\n  service: x\n', 2, 8, "must be <host>/<path>"),
        ('dispatch:\n- url: "example.com"\n  service: x\n', 2, 8, "must be <host>/<path>"),
        ('dispatch:\n- url: "Example.com/"\n  service: x\n', 2, 8, "lowercase letters"),
        ('dispatch:\n- url: "*/x"\n  service: Bad_Name\n', 3, 12, "service id 'Bad_Name'"),
        ('dispatch:\n- url: "*/x"\n', 2, 3, "dispatch rule has no 'service'"),
        ('dispatch:\n- url: "*/x"\n  servise: a\n', 3, 3, "did you mean 'service'?"),
        ("dispatch:\n" + '- url: "*/x"\n  service: a\n' * 21, 42, 3,
         "21 dispatch rules; at most 20"),
        ("dispatc: []\n", 1, 1, "did you mean 'dispatch'?"),
        ("dispatch: x\n", 1, 11, "'dispatch' must be a list"),
        ("- a\n", 1, 1, "must be a mapping with a 'dispatch' list"),
        ("dispatch: [\n", 2, 1, "invalid YAML"),
    ],
    ids=["star-inside-host", "star-inside-path", "no-host", "no-path", "uppercase-host",
         "bad-service", "missing-service", "unknown-key", "too-many-rules", "misspelt-top",
         "not-a-list", "not-a-mapping", "syntax-error"],
)
def test_route_5_dispatch_problems(
    tmp_path: Path, text: str, line: int, column: int, fragment: str
) -> None:
    assert_problem(dispatch_problems(tmp_path, text), line, column, fragment,
                   file="dispatch.yaml")


def test_route_5_missing_dispatch_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_dispatch(tmp_path)
    assert str(info.value) == f"{tmp_path}/dispatch.yaml:1:1: file not found"


# --------------------------------------------------------------------------- properties

KEYS = sorted(APP_ELEMENTS | IGNORED_ELEMENTS | HANDLER_KEYS | {
    "url", "service", "dispatch", "error_code", "file", "instances", "max_instances",
    "idle_timeout", "max_concurrent_requests", "target_cpu_utilization", "min_pending_latency",
})
SCALARS = (st.none() | st.booleans() | st.integers(-(10**20), 10**20)
           | st.floats(allow_nan=True) | st.sampled_from(
               ["python27", "python312", "auto", "/.*", "/(a", "static/\\1", "4d 5h", "30ms",
                "automatic", "10m", "301", "always", "admin", "main.py", "a.yaml", "", ".."])
           | st.text(max_size=8))
YAMLISH = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=5),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hypothesis-app")
    write(directory, "handlers:\n- url: /inc\n  script: auto\n", "a.yaml")
    write(directory, "includes: [a.yaml, app.yaml]\n", "b.yaml")
    return directory


def only_config_errors(scratch: Path, data: bytes) -> None:
    for name, loader in (("app.yaml", load_app), ("dispatch.yaml", load_dispatch)):
        (scratch / name).write_bytes(data)
        try:
            loader(scratch)
        except ConfigError as exc:
            found = exc.problems
        else:
            continue
        assert found
        assert all(p.line >= 1 and p.column >= 1 for p in found)


@settings(max_examples=300, deadline=None)
@given(document=YAMLISH)
def test_cfg_1_only_config_errors_escape_for_yamlish_documents(
    scratch: Path, document: object
) -> None:
    only_config_errors(scratch, json.dumps(document).encode())


@settings(max_examples=200, deadline=None)
@given(handlers=st.lists(st.dictionaries(st.sampled_from(sorted(HANDLER_KEYS)), SCALARS,
                                         max_size=6), max_size=4),
       extra=st.dictionaries(st.sampled_from(KEYS), YAMLISH, max_size=4),
       runtime=st.sampled_from(["python27", "python312"]))
def test_cfg_1_only_config_errors_escape_for_app_like_documents(
    scratch: Path, handlers: list[dict[str, object]], extra: dict[str, object], runtime: str
) -> None:
    document = {"runtime": runtime, "handlers": handlers, **extra}
    only_config_errors(scratch, json.dumps(document).encode())


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(
    list(":-[]{}\n #&*!|>'\"%@`,?")), max_size=120))
def test_cfg_1_only_config_errors_escape_for_arbitrary_text(scratch: Path, text: str) -> None:
    only_config_errors(scratch, text.encode("utf-8", "surrogatepass"))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120))
def test_cfg_1_only_config_errors_escape_for_arbitrary_bytes(scratch: Path, data: bytes) -> None:
    only_config_errors(scratch, data)


def test_cfg_1_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("runtime: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problems(tmp_path)


def test_cfg_1_loader_does_not_import_aiohttp() -> None:
    code = "import gfe_proxy.appyaml, sys; assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize("module", ["gfe_proxy.yamlnodes", "gfe_proxy.dispatchyaml"],
                         ids=["yamlnodes", "dispatchyaml"])
def test_cfg_1_yaml_modules_do_not_import_aiohttp(module: str) -> None:
    code = f"import {module}, sys; assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
