"""One way to start and stop a sandbox part: ``async with`` calls ``start()`` and ``stop()``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """Base for parts with async ``start()``/``stop()``; ``async with`` runs them."""

    async def start(self) -> None:
        """Bring the part up."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Bring the part down; safe to call twice."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
