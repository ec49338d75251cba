"""Integration tier for instances and scaling: a real gfe-proxy in front of real gunicorn
instances (tests/integration/apps/scaling/main.py), driven over HTTP and watched through the
admin /api/status. Each test names the SPEC rule it checks; waits are polls with a deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.loadgen import Load, count, in_background, live, service, unique
from tests.proxyproc import APPS, RunningProxy, pid_alive

pytestmark = pytest.mark.integration

SCALING = APPS / "scaling"
Factory = Callable[..., RunningProxy]


def whoami(p: RunningProxy, host: str | None = None) -> dict:  # type: ignore[type-arg]
    r = p.get(unique("/whoami"), headers={"Host": host} if host else None)
    assert r.status == 200, r.body
    return r.json()


def decisions(p: RunningProxy, action: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in service(p)["decisions"] if action is None or d["action"] == action]


# -- SCALE-1: automatic scaling -----------------------------------------------------------


def test_scale_1_slow_handler_under_6_clients_scales_to_4_then_back_to_min_after_idle(
    proxy_factory: Factory,
) -> None:
    # auto.yaml: T = max_concurrent_requests 4 x target_throughput_utilization 0.5 = 2, so a
    # load of 6 wants floor(6 / 2) + 1 = 4 instances; min_instances 1 is where it falls back.
    p = proxy_factory(str(SCALING / "auto.yaml"), "--scale-down-delay", "2")
    assert live(service(p)) == 1
    with Load(p, "/sleep?s=0.3", clients=6) as load:
        p.wait_for(lambda: count(service(p), "ready") == 4, what="4 ready instances")
        # Keep the load on until every instance has served requests under it.
        p.wait_for(
            lambda: all(i["served"] >= 3 for i in service(p)["instances"]),
            what="every instance serving",
        )
        assert live(service(p)) == 4
    assert load.failures == []
    assert load.errors == []
    p.wait_for(lambda: live(service(p)) == 1, what="scale-down to min_instances")
    svc = service(p)
    starts = [d for d in svc["decisions"] if d["action"] == "start"]
    assert sum(d["start"] for d in starts) == 3  # never above the 4 the rule predicts
    assert max(h[1] for h in svc["history"]) == 4
    assert "needs 4" in starts[-1]["reason"]
    stops = [d for d in svc["decisions"] if d["action"] == "stop"]
    assert len(stops) == 3
    assert all("scale-down delay 2s" in d["reason"] for d in stops)
    # SPEC SCALE-1: each decision is logged with its reason, verbatim.
    logged = "\n".join(p.stderr)
    assert all(d["reason"] in logged for d in svc["decisions"])
    # SPEC INST-3: with inbound_services: [warmup], every instance got /_ah/warmup before its
    # first request, so none of those was a loading request (LOG-1).
    assert whoami(p)["warmed"] is True
    access = [line for line in p.stdout if "/sleep?s=0.3" in line]
    assert access
    assert all("loading_request=0" in line for line in access)


# -- INST-3: crashes, deadlines, memory; SCALE-3 -------------------------------------------


def test_inst_3_kill_9_under_load_loses_no_queued_request(proxy_factory: Factory) -> None:
    # queue.yaml: one instance with two slots, so 8 concurrent requests are 2 in flight and 6
    # in the pending queue when the instance's whole process group is killed.
    p = proxy_factory(str(SCALING / "queue.yaml"))
    victim = whoami(p)["pgid"]
    workers = [in_background(p.get, unique("/sleep?s=0.4")) for _ in range(8)]
    p.wait_for(lambda: service(p)["pending"] == 6, what="6 queued requests")
    os.killpg(victim, signal.SIGKILL)
    for t, _ in workers:
        t.join(timeout=30)
    statuses = [out[0].status for _, out in workers]
    assert statuses == [200] * 8  # the 2 in flight were retried, the 6 queued were served
    replacement = whoami(p)["pgid"]
    assert replacement != victim
    assert not pid_alive(victim)
    (replace,) = decisions(p, "replace")
    assert "killed by signal 9" in replace["reason"]
    # LOG-1: the replacement's first request was a loading request.
    assert any("loading_request=1" in line for line in p.stdout)


def test_inst_3_failing_boots_back_off_answer_503_and_recover(
    proxy_factory: Factory, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(SCALING / "main.py", app / "main.py")
    shutil.copy(SCALING / "queue.yaml", app / "app.yaml")
    shutil.copytree(SCALING / "errors", app / "errors")
    p = proxy_factory(str(app))
    victim = whoami(p)["pgid"]
    (app / "BROKEN").write_text("main.py now exits at import\n")
    os.killpg(victim, signal.SIGKILL)
    p.wait_for(
        lambda: any("refuses to start" in x and "backoff" in x for x in p.stderr),
        what="a failed replacement boot",
    )
    # Nothing can serve: 503 (at once while backing off, else when the next boot fails),
    # not a 10 s wait for the pending timeout; the body is a GFE page, not a traceback.
    r = p.get(unique("/whoami"))
    assert r.status == 503
    assert b"Traceback" not in r.body
    (app / "BROKEN").unlink()
    p.wait_for(lambda: p.get(unique("/whoami")).status == 200, what="recovery once fixed")
    assert service(p)["counters"]["crashed"] == 1


@pytest.fixture(scope="module")
def strict(proxy_factory: Factory) -> RunningProxy:
    return proxy_factory(  # type: ignore[no-any-return]
        str(SCALING / "queue.yaml"), "--request-timeout", "2", "--pending-timeout", "0.5"
    )


def test_scale_3_request_pending_longer_than_the_timeout_gets_500(strict: RunningProxy) -> None:
    busy = [in_background(strict.get, unique("/sleep?s=1.2")) for _ in range(2)]  # both slots
    strict.wait_for(
        lambda: sum(i["inflight"] for i in service(strict)["instances"]) == 2,
        what="both slots busy",
    )
    r = strict.get(unique("/whoami"))
    assert r.status == 500
    assert b"Error: Server Error" in r.body
    for t, _ in busy:
        t.join(timeout=30)
    assert [out[0].status for _, out in busy] == [200, 200]
    strict.wait_for(
        lambda: any(
            "Request was aborted after waiting too long to attempt to service your request." in line
            for line in strict.stderr
        ),
        what="the SCALE-3 log message",
    )
    assert service(strict)["counters"]["pending_timeouts"] == 1


def test_scale_4_hung_handler_hits_the_deadline_and_the_instance_is_recycled(
    strict: RunningProxy,
) -> None:
    hung = whoami(strict)["pgid"]
    r = strict.get(unique("/hang"))
    assert r.status == 500
    assert b"scaling-app timeout page" in r.body  # ERR-2: the `timeout` error handler's page
    replacement = strict.wait_for(
        lambda: (lambda pgid: pgid if pgid != hung else None)(whoami(strict)["pgid"]),
        what="a fresh instance",
    )
    assert replacement != hung
    (recycle,) = decisions(strict, "recycle")
    assert "exceeded its 2s deadline" in recycle["reason"]
    strict.wait_for(lambda: not pid_alive(hung), what="the hung instance to be stopped")


def test_inst_3_instance_over_its_memory_limit_is_recycled_with_the_production_message(
    proxy_factory: Factory,
) -> None:
    p = proxy_factory(str(SCALING / "queue.yaml"))
    hungry = whoami(p)["pgid"]
    assert p.get(unique("/mem?mb=420")).status == 200  # F1 (gen2): 384 MiB
    line = p.wait_for(
        lambda: next((x for x in p.stderr if "Exceeded soft memory limit" in x), None),
        what="the memory message",
    )
    assert re.search(
        r"Exceeded soft memory limit of 384 MiB with \d+ MiB after servicing \d+ requests total\."
        r" Consider setting a larger instance class in app.yaml\.",
        line,
    )
    p.wait_for(lambda: whoami(p)["pgid"] != hungry, what="a replacement instance")
    p.wait_for(lambda: not pid_alive(hungry), what="the hungry instance to stop")


# -- SCALE-2 manual, INST-3 /_ah/start and /_ah/stop, ROUTE-5 targeting ----------------------


def target(instance: str) -> str:
    return f"{instance}-dot-v1-dot-manual-dot-localhost"


@pytest.fixture(scope="module")
def manual(proxy_factory: Factory) -> RunningProxy:
    return proxy_factory(str(SCALING / "manual.yaml"))  # type: ignore[no-any-return]


def test_inst_3_manual_instances_get_ah_start_before_serving(manual: RunningProxy) -> None:
    first, second = whoami(manual, target("0")), whoami(manual, target("1"))
    assert first["started"] is True
    assert second["started"] is True
    assert first["pgid"] != second["pgid"]
    assert sum("got /_ah/start" in line for line in manual.stderr) == 2


@pytest.mark.parametrize(
    ("by_number", "by_id"), [("0", "i-1"), ("1", "i-2")], ids=["first", "second"]
)
def test_route_5_instance_number_and_id_name_the_same_instance(
    manual: RunningProxy, by_number: str, by_id: str
) -> None:
    assert whoami(manual, target(by_number))["pgid"] == whoami(manual, target(by_id))["pgid"]


def test_route_5_unknown_instance_is_503_at_once(manual: RunningProxy) -> None:
    r = manual.get(unique("/whoami"), headers={"Host": target("7")})
    assert r.status == 503


def test_route_5_busy_instance_is_503_at_once_others_still_serve(manual: RunningProxy) -> None:
    # Manual instances take 10 requests at once (SPEC INST-4 default).
    busy = [
        in_background(lambda: manual.get(unique("/sleep?s=2"), headers={"Host": target("0")}))
        for _ in range(10)
    ]
    manual.wait_for(
        lambda: next(i for i in service(manual)["instances"] if i["id"] == "i-1")["inflight"] == 10,
        what="instance 0 full",
    )
    assert manual.get(unique("/whoami"), headers={"Host": target("0")}).status == 503
    assert manual.get(unique("/whoami"), headers={"Host": target("1")}).status == 200
    for t, _ in busy:
        t.join(timeout=30)
    assert [out[0].status for _, out in busy] == [200] * 10


def test_scale_2_dead_manual_instance_is_restarted_and_gets_ah_start(
    manual: RunningProxy,
) -> None:
    victim = whoami(manual, target("1"))["pgid"]
    os.killpg(victim, signal.SIGKILL)

    def restarted() -> bool:
        svc = service(manual)
        ready = {i["id"] for i in svc["instances"] if i["state"] == "ready"}
        return len(ready) == 2 and "i-2" not in ready

    manual.wait_for(restarted, what="a restarted second instance")
    fresh = whoami(manual, target("1"))
    assert fresh["pgid"] != victim
    assert fresh["started"] is True
    assert sum("got /_ah/start" in line for line in manual.stderr) == 3


def test_inst_3_manual_instances_hear_ah_stop_on_shutdown(manual: RunningProxy) -> None:
    pids = manual.instance_pids()
    assert manual.stop() == 0
    assert sum("got /_ah/stop" in line for line in manual.stderr) == len(pids) == 2
    assert not any(pid_alive(pid) for pid in pids)


def test_scale_2_basic_instance_stops_after_idle_timeout_and_starts_on_demand(
    proxy_factory: Factory,
) -> None:
    p = proxy_factory(str(SCALING / "basic.yaml"))
    p.wait_for(lambda: live(service(p)) == 0, what="the idle_timeout stop")
    (stop,) = decisions(p, "stop")
    assert "idle >= idle_timeout 1s" in stop["reason"]
    # SPEC INST-3: /_ah/stop before SIGTERM.
    p.wait_for(lambda: any("got /_ah/stop" in line for line in p.stderr), what="/_ah/stop")
    assert whoami(p)["started"] is True  # started on demand, /_ah/start first
    (start,) = decisions(p, "start")
    assert "1 pending" in start["reason"]
    assert sum("got /_ah/start" in line for line in p.stderr) == 2


# -- --reload ----------------------------------------------------------------------------


def test_reload_switches_to_new_code_with_no_failed_request(
    proxy_factory: Factory, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(SCALING / "main.py", app / "main.py")
    shutil.copy(SCALING / "reload.yaml", app / "app.yaml")
    p = proxy_factory(str(app), "--reload")
    old = set(p.instance_pids())
    assert len(old) == 2  # min_instances 2
    with Load(p, "/whoami", clients=4) as load:
        p.wait_for(lambda: len(load.results) >= 20, what="traffic before the change")
        main = app / "main.py"
        main.write_text(main.read_text().replace('VERSION = "v1"', 'VERSION = "v2-reloaded"'))
        p.wait_for(
            lambda: sum(b'"v2-reloaded"' in body for _, body in load.results) >= 20,
            what="traffic served by the new version",
        )
    assert load.failures == []
    assert load.errors == []
    versions = {body.split(b'"version": "')[1].split(b'"')[0] for _, body in load.results}
    assert versions == {b"v1", b"v2-reloaded"}
    p.wait_for(lambda: not (set(p.instance_pids()) & old), what="old instances gone")
    assert not any(pid_alive(pid) for pid in old)
    (reload,) = decisions(p, "reload")
    assert "main.py modified" in reload["reason"]
    assert {i["generation"] for i in service(p)["instances"]} == {2}
