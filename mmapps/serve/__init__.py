"""``mmapps <domain> serve``: the FastAPI service around a trained or exported model.

Web code knows HTTP; it calls the model runner, it does not know models. The rooms:

- `app`: ``create_app(state) -> FastAPI``, the routers and middleware; where monitoring plugs in.
- `state`: `ServiceState` (loaded versions, settings, keys, audit log, metrics, decoder pool).
- `auth`, `limits`: API keys (HMAC-SHA256 digests), scopes, per-key rate limits.
- `audit`: the append-only JSON-lines audit log (no payload, identifier, note or chat text).
- `runner`, `versions`, `batcher`: a loaded model, versions side by side, the micro-batcher.
- `decoders`, `decode_worker`: raw uploads decoded in rlimited subprocesses.
- `request_roots`: an upload written as a data root the domain's own readers read.
- `admission`: bounded admission to the model path (load shedding: 503 + Retry-After).
- `routes_predict`, `routes_v2`, `routes_admin`: the endpoints; a domain's own endpoints come from its
  ``Domain.serve`` hook (the built-in ones in ``domains/<d>/serve.py``).
- `server`: uvicorn with TLS, readiness and SIGTERM draining.
"""
