"""What a reload checks before anything of the new configuration is put in force.

A reload re-reads the file (off the event loop), lays the command line's overrides
over it, keeps the running value of each setting that only a restart can change,
and refuses a file that would leave an exposed admin API without its token. Every
refusal is a :class:`~chaosproxy.config.ConfigError`, as ``chaosproxy validate``
reports it, and the configuration in force stays as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from chaosproxy.admin import check_admin_exposure
from chaosproxy.config import ConfigError, ConfigProblem, ProxyConfig, load_config

__all__ = ["RESTART_SETTINGS", "prepare_reload"]

logger = logging.getLogger("chaosproxy.config")

#: Settings a reload cannot change (they need a new socket, or a new observation
#: window): they keep their running values until a restart.
RESTART_SETTINGS = ("listen", "admin", "seed", "observations_window")


async def _read(path: str, overrides: Mapping[str, object]) -> ProxyConfig:
    """Load the file off the loop and lay ``overrides`` over it."""
    loop = asyncio.get_running_loop()
    config = await loop.run_in_executor(None, load_config, path)
    if overrides:
        # The overrides were validated when the proxy started.
        config = config.model_copy(update=dict(overrides))

    return config


def _pin(config: ProxyConfig, running: ProxyConfig) -> tuple[ProxyConfig, list[str]]:
    """Keep the running value of each restart setting; name those that differed."""
    changed = [
        name
        for name in RESTART_SETTINGS
        if getattr(config, name) != getattr(running, name)
    ]
    if not changed:
        return config, []
    kept = {name: getattr(running, name) for name in changed}

    return config.model_copy(update=kept), changed


async def prepare_reload(
    running: ProxyConfig,
    *,
    config: ProxyConfig | None = None,
    path: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> tuple[ProxyConfig, list[str]]:
    """Return the configuration a reload puts in force, and the pinned settings.

    The new configuration is ``config`` if given, else the file at ``path``.

    Raises:
        ConfigError: The file is unreadable or invalid, or would expose the admin
            API without a token; the problems are logged too.
        RuntimeError: Neither ``config`` nor ``path`` was given.
    """
    source = path or "<reload>"
    try:
        if config is None:
            if path is None:
                raise RuntimeError("this proxy was not started from a file")
            config = await _read(path, overrides or {})
        config, pinned = _pin(config, running)
        try:
            check_admin_exposure(config)
        except ValueError as exc:
            problem = ConfigProblem(source, None, "admin_token", str(exc))
            raise ConfigError([problem]) from None
    except ConfigError as exc:
        logger.warning("reload refused", extra={"file": source, "problems": str(exc)})
        raise

    return config, pinned
