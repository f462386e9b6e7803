"""Per-link TCP proxies on 127.0.0.1: how the nemesis cuts, delays and drops one directed link.

Owns one listening socket per directed link ``(a, b)`` ("node a dials node b"), the byte pumps
of every connection through it, and the link's mode:

* ``pass``  - bytes flow both ways;
* ``cut``   - every open connection is closed and new ones are closed at once (a refused link);
* ``drop``  - connections stay open but nothing gets through: bytes are held, not delivered (a
              black-holed route: TCP neither delivers nor fails, the sender sees only silence;
              what was held flows again on healing, as TCP's retransmissions would deliver it,
              unless a side gave up on the connection meanwhile);
* a delay (``delay_ms``) added before each chunk is forwarded, in both directions.

TLS goes through untouched (the proxy never looks at the bytes), so the nodes' mutual TLS is
what it is without proxies. All proxies run on one asyncio loop in one daemon thread; every
buffer is bounded (``CHUNK_BYTES`` per read, the transport's own write limits).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

CHUNK_BYTES = 64 * 1024
MAX_DELAY_MS = 5_000
HOLD_POLL_S = 0.05
START_TIMEOUT_S = 10


@dataclass
class Link:
    source: int
    target: int
    listen_port: int
    target_port: int
    mode: str = "pass"            # "pass" | "cut" | "drop"
    delay_ms: int = 0
    connections: set = field(default_factory=set)   # open (reader, writer) pairs' writers
    server: asyncio.AbstractServer | None = None
    accepted: int = 0


class LinkProxies:
    """The proxies of every directed link between ``ports`` (node index -> real port)."""

    def __init__(self, node_ports: list[int], proxy_ports: dict[tuple[int, int], int]) -> None:
        self.links = {key: Link(key[0], key[1], port, node_ports[key[1]]) for key, port in proxy_ports.items()}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-proxies", daemon=True)

    def address(self, source: int, target: int) -> str:
        return f"127.0.0.1:{self.links[(source, target)].listen_port}"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen_all(), self._loop).result(START_TIMEOUT_S)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)

    async def _listen_all(self) -> None:
        for link in self.links.values():
            link.server = await asyncio.start_server(
                lambda r, w, link=link: self._serve(link, r, w), "127.0.0.1", link.listen_port)

    async def _close_all(self) -> None:
        for link in self.links.values():
            if link.server is not None:
                link.server.close()
            self._close_connections(link)

    # --- modes (called from any thread) ------------------------------------------------------

    def set_mode(self, source: int, target: int, mode: str, delay_ms: int = 0) -> None:
        if mode not in ("pass", "cut", "drop") or not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"bad link mode {mode!r} / delay {delay_ms}")
        asyncio.run_coroutine_threadsafe(self._set(source, target, mode, delay_ms), self._loop).result(START_TIMEOUT_S)

    def heal_all(self) -> None:
        for source, target in self.links:
            self.set_mode(source, target, "pass")

    def isolate(self, node: int, mode: str = "cut") -> None:
        """Every link to and from ``node``."""
        for source, target in self.links:
            if node in (source, target):
                self.set_mode(source, target, mode)

    async def _set(self, source: int, target: int, mode: str, delay_ms: int) -> None:
        link = self.links[(source, target)]
        link.mode, link.delay_ms = mode, delay_ms
        if mode == "cut":
            self._close_connections(link)

    @staticmethod
    def _close_connections(link: Link) -> None:
        for writer in list(link.connections):
            writer.transport.abort()
        link.connections.clear()

    # --- the pumps ---------------------------------------------------------------------------

    async def _serve(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link.accepted += 1
        if link.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", link.target_port)
        except OSError:
            writer.transport.abort()          # the target is down: so is the link
            return
        link.connections.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(link, reader, up_writer), self._pump(link, up_reader, writer))
        finally:
            for w in (writer, up_writer):
                link.connections.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                if link.delay_ms:
                    await asyncio.sleep(link.delay_ms / 1000)
                while link.mode == "drop":           # hold this chunk; read no more (bounded)
                    await asyncio.sleep(HOLD_POLL_S)
                if link.mode == "cut":
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
