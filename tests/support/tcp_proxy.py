"""A small TCP proxy a test puts between an app and its database, to cut the link on demand.

It runs its own event loop in a daemon thread, so synchronous and asynchronous tests drive it
alike::

    with TcpProxy("127.0.0.1", 5432) as proxy:     # listening on 127.0.0.1:proxy.port
        ...                                        # the app connects through proxy.port
        proxy.refuse()      # database host down: every link reset, new connections refused
        proxy.blackhole()   # network partition: links freeze, new connections hang
        proxy.forward()     # back to normal, on the same port
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Literal

__all__ = ["TcpProxy"]

Mode = Literal["forward", "refuse", "blackhole"]
_CHUNK = 65536


class _Link:
    """One client connection and its upstream twin."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.frozen = asyncio.Event()  # set while the network is "partitioned"
        self.thawed = asyncio.Event()
        self.thawed.set()

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode: Mode = "forward"
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._cut_pattern = b""
        self._cuts_left = 0
        self._cuts_done = 0

    # --- control (from any thread) ---------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def forward(self) -> None:
        """Restore the link: listen again (same port) and let frozen connections flow again."""
        self._call(self._set_mode("forward"))

    def refuse(self) -> None:
        """Database down: reset every open connection and refuse new ones."""
        self._call(self._set_mode("refuse"))

    def blackhole(self) -> None:
        """Partition: open connections stop moving bytes, new ones are accepted and then hang."""
        self._call(self._set_mode("blackhole"))

    def cut_on(self, pattern: bytes, times: int = 1) -> None:
        """Reset the next ``times`` links whose client sends ``pattern`` (e.g. ``b"COMMIT"``),
        before the bytes reach the database: a failure at one precise step of a request."""
        self._cut_pattern, self._cuts_left = pattern, times

    @property
    def cuts_done(self) -> int:
        return self._cuts_done

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coroutine: object, timeout: float = 10.0) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        future.result(timeout)

    # --- inside the proxy's loop --------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for link in list(self._links):
                link.abort()
            self._links.clear()
        elif mode == "blackhole":
            if self._server is None:
                await self._listen()
            for link in self._links:
                link.freeze()
        else:
            if self._server is None:
                await self._listen()
            if previous == "blackhole":
                for link in self._links:
                    link.thaw()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.mode == "refuse":
                return
            if self.mode == "blackhole":
                link.freeze()
            await link.thawed.wait()
            if self.mode != "forward":
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            link.upstream = up_writer
            await asyncio.gather(
                self._pipe(reader, up_writer, link, self._should_cut),
                self._pipe(up_reader, writer, link, None),
            )
        finally:
            self._links.discard(link)
            link.abort()

    def _should_cut(self, data: bytes) -> bool:
        if self._cuts_left > 0 and self._cut_pattern and self._cut_pattern in data:
            self._cuts_left -= 1
            self._cuts_done += 1
            return True
        return False

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        cut: Callable[[bytes], bool] | None,
    ) -> None:
        try:
            while True:
                data = await source.read(_CHUNK)
                if not data:
                    break
                if cut is not None and cut(data):
                    break  # the finally below resets both sides
                await link.thawed.wait()  # a partition holds the bytes back
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            link.abort()
