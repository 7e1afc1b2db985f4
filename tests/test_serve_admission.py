"""Load shedding: bounded admission to the model path answers 503 + Retry-After above capacity, never another 5xx.

The gate alone (FIFO hand-over, queue bound, wait bound, Retry-After from the drain rate), then a
real uvicorn on loopback serving the medical smoke checkpoint with room for one request and one
waiter, hit by a burst of concurrent DICOM uploads over httpx.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from mmapps.serve.admission import AdmissionControl, AdmissionLimits, default_limits
from mmapps.serve.errors import ServeError


class _Count:
    def __init__(self) -> None:
        self.shed_calls: list[str] = []

    def shed(self, model: str) -> None:
        self.shed_calls.append(model)


def test_defaults_follow_the_batcher_capacity():
    assert default_limits(8, 2) == AdmissionLimits(18, 72, 30.0)
    assert default_limits(1, 1) == AdmissionLimits(3, 32, 30.0)
    assert default_limits(8, 2, max_in_flight=4, max_queued=0) == AdmissionLimits(4, 0, 30.0)


def test_gate_admits_queues_in_order_and_refuses_with_retry_after():
    metrics = _Count()
    gate = AdmissionControl("medical", AdmissionLimits(max_in_flight=2, max_queued=2, max_wait_s=5.0), metrics)
    order: list[int] = []

    async def scenario() -> list:
        go = asyncio.Event()

        async def request(i: int) -> str:
            try:
                async with gate.slot():
                    order.append(i)
                    await go.wait()
                return "ok"
            except ServeError as err:
                return f"{err.status}:{err.kind}:{err.headers['Retry-After']}"

        tasks = [asyncio.create_task(request(i)) for i in range(6)]
        await asyncio.sleep(0.05)
        snapshot = (gate.in_flight, gate.queued)
        go.set()
        return [snapshot, *await asyncio.gather(*tasks)]

    snapshot, *answers = asyncio.run(scenario())
    assert snapshot == (2, 2)
    assert answers[:4] == ["ok"] * 4
    assert all(a.startswith("503:overloaded:") and int(a.rsplit(":", 1)[1]) >= 1 for a in answers[4:])
    assert order == [0, 1, 2, 3]  # queued requests admitted first-in first-out
    assert metrics.shed_calls == ["medical", "medical"] and gate.shed == 2
    assert (gate.in_flight, gate.queued) == (0, 0)  # every slot returned


def test_a_waiter_past_its_wait_bound_is_refused_and_the_slot_count_stays_right():
    gate = AdmissionControl("m", AdmissionLimits(max_in_flight=1, max_queued=4, max_wait_s=0.05))

    async def scenario() -> tuple:
        hold = asyncio.Event()

        async def holder() -> None:
            async with gate.slot():
                await hold.wait()

        task = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        with pytest.raises(ServeError) as refused:
            async with gate.slot():
                pass
        hold.set()
        await task
        async with gate.slot():  # free again
            pass
        return refused.value, gate.in_flight, gate.queued

    err, in_flight, queued = asyncio.run(scenario())
    assert err.status == 503 and "waited" in err.message and (in_flight, queued) == (0, 0)


def test_retry_after_is_the_backlog_over_the_drain_rate():
    gate = AdmissionControl("m", AdmissionLimits(max_in_flight=2, max_queued=10, max_wait_s=1))
    gate._hold_s, gate.in_flight = 3.0, 2  # two requests of 3 s each in progress, none waiting
    assert gate.retry_after_s() == 3
    gate._hold_s = 0.01
    assert gate.retry_after_s() == 1  # never below the header's 1 s


@pytest.mark.slow
def test_real_server_sheds_a_burst_with_503_and_retry_after_and_stays_ready(tmp_path_factory, monkeypatch):
    """uvicorn on loopback, room for 1 request + 1 waiter, 10 concurrent uploads: 200s and 503s only, readiness 200 meanwhile."""
    import httpx
    import uvicorn

    from mmapps.domain import resolve
    from mmapps.plugins import get_domain
    from mmapps.serve import testkit
    from mmapps.serve.app import create_app
    from mmapps.serve.service import build_state, close_state
    from mmapps.serve.state import ServiceSettings

    domain = get_domain("medical")
    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    dicom = sorted(Path(resolve(domain.write_demo_data)(tmp_path_factory.mktemp("demo"), 4, 0)).rglob("*.dcm"))[0].read_bytes()
    env, predict, admin = testkit.api_keys()
    monkeypatch.setenv("MMAPPS_API_KEYS", env)
    settings = ServiceSettings(decode_workers=1, max_batch_size=1, max_in_flight=1, max_queued=1, rate_per_key=0)
    state = build_state(domain, checkpoint, settings, version="v1")
    server = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

        async def burst() -> tuple[list[httpx.Response], list[int]]:
            async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Authorization": f"Bearer {predict}"}) as client:
                files = [("dicom", ("a.dcm", dicom, "application/dicom"))]
                sends = [client.post("/v1/medical/predict", files=files, data={"note": "HISTORY: cough."}) for _ in range(10)]
                tasks = [asyncio.ensure_future(s) for s in sends]
                await asyncio.sleep(0.2)
                ready = [(await client.get("/v2/health/ready")).status_code for _ in range(3)]  # while the burst is served
                return list(await asyncio.gather(*tasks)), ready

        answers, ready = asyncio.run(burst())
        codes = sorted(r.status_code for r in answers)
        shed = [r for r in answers if r.status_code == 503]
        assert set(codes) <= {200, 503} and codes.count(200) >= 2 and len(shed) >= 3, codes
        assert all(r.json()["class"] == "overloaded" and int(r.headers["Retry-After"]) >= 1 for r in shed)
        assert "at capacity" in shed[0].json()["error"]
        assert ready == [200, 200, 200]
        with httpx.Client(base_url=url, timeout=120) as client:
            after = client.post("/v1/medical/predict", files=[("dicom", ("a.dcm", dicom, "application/dicom"))], headers={"Authorization": f"Bearer {predict}"})
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        assert after.status_code == 200
        assert f'mmapps_shed_requests_total{{model="medical"}} {float(len(shed))}' in metrics
        assert (state.admission.in_flight, state.admission.queued) == (0, 0)
    finally:
        server.should_exit = True
        thread.join(30)
        close_state(state)
