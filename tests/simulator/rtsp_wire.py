"""A bare RTSP player for the tests: requests as text, RTP read off the socket or a UDP port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field

import av
import numpy as np

from scopelink import framestamp
from scopelink.simulator.h264 import depacketize


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers[name.lower()]


@dataclass
class RtpPacket:
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
        assert b0 >> 6 == 2, "RTP version 2"
        assert b0 & 0x3F == 0, "no padding, extension or CSRCs"
        return cls(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, data[12:])


@dataclass
class Decoded:
    """What a player saw: access units' NAL types, pictures, stamps, RTCP packet types."""

    units: list[list[int]] = field(default_factory=list)
    pictures: list[np.ndarray] = field(default_factory=list)
    stamps: list[framestamp.FrameStamp | None] = field(default_factory=list)
    rtcp_types: list[int] = field(default_factory=list)


class AccessUnits:
    """Joins RTP packets into access units at the marker bit; `decode()` runs PyAV on them
    afterwards (decoding while reading would slow the simulator sharing this event loop)."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.last_seq: int | None = None
        self.result = Decoded()
        self.packets: list[RtpPacket] = []
        self.nals: list[list[bytes]] = []

    def feed(self, packet: RtpPacket) -> None:
        if self.last_seq is not None:
            assert packet.seq == (self.last_seq + 1) & 0xFFFF, "no gaps in a session's seq"
        self.last_seq = packet.seq
        self.packets.append(packet)
        self.payloads.append(packet.payload)
        if packet.marker:
            nals = depacketize(self.payloads)
            self.payloads = []
            self.result.units.append([n[0] & 0x1F for n in nals])
            self.nals.append(nals)

    def decode(self) -> Decoded:
        codec = av.CodecContext.create("h264", "r")
        for nals in self.nals:
            data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
            for frame in codec.decode(av.Packet(data)):
                luma = frame.to_ndarray(format="gray")  # the Y plane: cheap, and enough
                self.result.pictures.append(luma)
                self.result.stamps.append(framestamp.read(luma))
        self.nals = []
        return self.result


class RtspWire:
    """One RTSP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str):
        self.reader, self.writer, self.url = reader, writer, url
        self.cseq = 0
        self.session: str | None = None
        self.interleaved: list[tuple[int, bytes]] = []

    @classmethod
    async def open(cls, port: int, path: str = "/stream") -> RtspWire:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"rtsp://127.0.0.1:{port}{path}")

    async def request(
        self, method: str, url: str | None = None, timeout: float = 3.0, **headers: str
    ) -> Reply:
        self.cseq += 1
        lines = [f"{method} {url or self.url} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session and "Session" not in headers:
            headers["Session"] = self.session
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        return await asyncio.wait_for(self.reply(), timeout)

    async def reply(self) -> Reply:
        """The next reply; interleaved packets before it are kept in `interleaved`."""
        while True:
            first = await self.reader.readexactly(1)
            if first == b"$":
                head = await self.reader.readexactly(3)
                data = await self.reader.readexactly(int.from_bytes(head[1:], "big"))
                self.interleaved.append((head[0], data))
                continue
            head = first + await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            version, status, *_ = lines[0].split(" ")
            assert version == "RTSP/1.0"
            headers = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            assert headers.get("cseq") == str(self.cseq), "replies echo CSeq"
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length) if length else b""
            return Reply(int(status), headers, body)

    async def setup_tcp(self) -> Reply:
        await self.request("DESCRIBE", Accept="application/sdp")
        reply = await self.request(
            "SETUP", f"{self.url}/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
        )
        assert reply.status == 200, reply
        self.session = reply.header("session").split(";")[0]
        return reply

    async def read_interleaved(self, seconds: float, units: AccessUnits) -> Decoded:
        """Read RTP for `seconds` (or until the server closes) into `units`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        for channel, data in self.interleaved:
            _feed(channel, data, units)
        self.interleaved.clear()
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
            while (left := end - loop.time()) > 0:
                head = await asyncio.wait_for(self.reader.readexactly(4), left)
                assert head[:1] == b"$", f"interleaved data only, got {head!r}"
                data = await self.reader.readexactly(int.from_bytes(head[2:], "big"))
                _feed(head[1], data, units)
        return units.decode()

    async def skip_until_quiet(self, quiet: float, limit: float = 5.0) -> int:
        """Read and drop interleaved data until none comes for `quiet` seconds; the bytes read.

        What a server had written before it was told to stop (in its socket or ours) still
        arrives: a test of the stop reads past it first."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        dropped = sum(len(data) for _, data in self.interleaved)
        self.interleaved.clear()
        while loop.time() < end:
            try:
                head = await asyncio.wait_for(self.reader.readexactly(4), quiet)
            except TimeoutError:
                return dropped
            assert head[:1] == b"$", f"interleaved data only, got {head!r}"
            dropped += len(await self.reader.readexactly(int.from_bytes(head[2:], "big")))
        raise AssertionError(f"still receiving after {limit} s")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def _feed(channel: int, data: bytes, units: AccessUnits) -> None:
    if channel == 0:
        units.feed(RtpPacket.parse(data))
    else:
        units.result.rtcp_types.append(data[1])


class UdpPorts:
    """An RTP and an RTCP socket for a UDP session."""

    def __init__(self) -> None:
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtcp.bind(("127.0.0.1", 0))
        for s in (self.rtp, self.rtcp):
            s.setblocking(False)

    @property
    def spec(self) -> str:
        return f"{self.rtp.getsockname()[1]}-{self.rtcp.getsockname()[1]}"

    async def read(self, seconds: float, units: AccessUnits) -> Decoded:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(loop.sock_recv(self.rtp, 65536), left)
                units.feed(RtpPacket.parse(data))
            with contextlib.suppress(BlockingIOError):
                while True:
                    units.result.rtcp_types.append(self.rtcp.recv(2048)[1])
        return units.decode()

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()
