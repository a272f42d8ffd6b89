"""``make bench-gateway``: the gateway's own CPU per call, against fast fakes of every upstream.

:mod:`~bench.gateway_bench.run` orchestrates, :mod:`~bench.gateway_bench.fakes` serves the fake
STT/TTS/LLM (and the real Smart Turn behind ``/v1/turn``), :mod:`~bench.gateway_bench.caller`
places the simulated Twilio calls, :mod:`~bench.gateway_bench.measure` holds the arithmetic,
:mod:`~bench.gateway_bench.profile` the py-spy profile, :mod:`~bench.gateway_bench.report` the
table and the plot. Method and results: ``docs/benchmarks.md`` ("Gateway CPU per call").
"""
