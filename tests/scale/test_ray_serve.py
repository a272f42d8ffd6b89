"""STT and TTS as Ray Serve deployments on a local cluster of three nodes (services/cluster/).

Real: Ray (``ray.cluster_utils.Cluster``: a head and two worker raylets), Serve's proxy, the STT
(faster-whisper) and TTS (Kokoro) apps built by their own ``create_app()`` in the replicas, the
gateway's own clients. The load test scales STT from one replica to two and back; a replica killed
with requests in flight costs no transcription (the gateway's client sends it again, Serve routes
it to the survivor).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest
import ray

from bench.scale_bench import measure
from gateway.conversation.transport import AudioFormat
from gateway.metrics import UPSTREAM_RETRIES
from gateway.upstream.speech import STTClient
from gateway.upstream.tts_stream import TTSStreamClient
from gateway.upstream.turn import RemoteTurnDetector
from services.cluster.apps import REPLICA_HEADER
from services.cluster.local import LOCAL_CONFIG, LocalCluster, load_config
from shared.audio import float_to_pcm16, read_audio, ulaw_decode
from tools.stack import free_port

pytestmark = pytest.mark.timeout(300)

ARCTIC = "He turned sharply and faced Gregson across the table."


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster(nodes=3, cpus_per_node=2, port=free_port()).start()
    try:
        local.deploy(load_config(LOCAL_CONFIG))
        yield local
    finally:
        local.shutdown()


@pytest.fixture(scope="module")
def speech(arctic_wav) -> np.ndarray:
    audio, _ = read_audio(str(arctic_wav), target_rate=16000)
    return float_to_pcm16(audio)


async def _text(parts: list[str]) -> AsyncIterator[str]:
    for part in parts:
        yield part


def test_the_gateways_clients_are_served_through_serve(cluster: LocalCluster, speech: np.ndarray) -> None:
    async def scenario() -> tuple[str, list[bytes], float]:
        async with httpx.AsyncClient(timeout=60) as http:
            text = await STTClient(http, cluster.url + "/stt", timeout_s=60).transcribe(speech, 16000)
            turn = await RemoteTurnDetector(http, cluster.url + "/stt", timeout_s=30).check(speech)
        stream = await TTSStreamClient(cluster.url + "/tts", timeout_s=60).open("af_heart", AudioFormat("pcmu", 8000))
        try:
            segments = [seg.audio async for seg in stream.speak(_text(["Hello from ", "the cluster."]))]
        finally:
            await stream.aclose()
        return text, segments, turn

    text, segments, turn = asyncio.run(scenario())
    assert text.rstrip(".").lower() == ARCTIC.rstrip(".").lower()
    assert 0.0 <= turn <= 1.0  # /v1/turn (Smart Turn, batched in the STT replica)
    audio = ulaw_decode(b"".join(segments)).astype(np.float64)
    assert len(audio) > 8000 * 0.5 and np.sqrt(np.mean(audio**2)) > 300  # half a second of speech, μ-law 8 kHz


def test_load_scales_stt_up_and_back_down(cluster: LocalCluster, speech: np.ndarray) -> None:
    run = measure(cluster.url + "/stt", speech, rate_hz=4.0, seconds=20.0, settle_s=45.0)
    figures = run.summary()
    print("scale run:", figures)  # the figures for docs/scale-out.md (make bench-scale writes them)
    assert run.failed == 0 and run.ok == run.sent, figures
    assert figures["replicas_served"] == 2, figures  # the second replica took traffic
    assert figures["starting_s"] is not None and figures["take_traffic_s"] is not None, figures
    assert figures["back_to_one_s"] is not None, figures  # and the load gone, back to one


def test_a_replica_killed_mid_request_is_retried_on_another(cluster: LocalCluster, speech: np.ndarray) -> None:
    two = {
        "name": "stt",
        "route_prefix": "/stt",
        "import_path": "services.cluster.apps:stt_app",
        "args": {"num_replicas": 2, "max_ongoing_requests": 2, "env": {"STT_CPU_THREADS": "1"}},
    }
    cluster.deploy([two])
    long = np.concatenate([speech] * 18)  # ~55 s of speech, two Whisper windows: seconds to transcribe
    before = UPSTREAM_RETRIES.labels("stt")._value.get()

    async def scenario() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as http:
            stt = STTClient(http, cluster.url + "/stt", timeout_s=120)
            # The replica to kill is one that serves traffic now (the actor list may still hold a
            # replica of the previous deployment that is being stopped): the one answering a probe.
            url = cluster.url + "/stt/v1/audio/transcriptions/raw"
            probe = await http.post(url, params={"sample_rate": 16000}, content=speech.tobytes())
            serving = probe.headers[REPLICA_HEADER]
            turns = [asyncio.create_task(stt.transcribe(long, 16000)) for _ in range(4)]  # two on each replica
            await asyncio.sleep(1.0)
            assert not any(t.done() for t in turns)  # all still being transcribed
            replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "SERVE_REPLICA::stt" in a["name"]]
            victim = next(a for a in replicas if serving in a["name"])
            ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]))
            return await asyncio.gather(*turns)

    texts = asyncio.run(scenario())
    assert all(ARCTIC.split()[0] in t and "table" in t for t in texts), texts  # no turn lost
    assert UPSTREAM_RETRIES.labels("stt")._value.get() - before >= 1  # some were sent again
