"""Run the runner's app under uvicorn, with graceful shutdown on SIGTERM.

On SIGTERM uvicorn stops accepting connections and waits (up to `drain_timeout_s`) for requests
in flight; then the app's lifespan closes each model's queue after finishing what it holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modelyard.serve.config import ServeConfig


def run(config: ServeConfig, state_dir: Path, log_level: str = "info") -> None:
    import uvicorn

    from modelyard.serve.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s %(message)s")
    state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config, state_dir)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=log_level,
            lifespan="on",
            timeout_graceful_shutdown=int(config.drain_timeout_s) or None,
            access_log=False,
        )
    )
    server.run()
