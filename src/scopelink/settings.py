"""Ports, defaults and limits: the one place they are written down."""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL_PORT = 4700
IMAGING_PORT = 4800
DISCOVERY_PORT = 4720
#: Live video (RTSP, path /stream) in the RTSP view stages: the main camera.
RTSP_PORT = 4554
#: The S30's wide-angle camera: its RTSP video and its imaging port (same framing as 4800).
WIDE_RTSP_PORT = 4555
WIDE_IMAGING_PORT = 4804

#: The firmware drops a control socket after ~15.5 s without traffic (measured on 8.89).
FIRMWARE_IDLE_CUT_S = 15.5
#: Our keepalive stays well below the idle cut.
CONTROL_KEEPALIVE_S = 5.0
#: The official app keeps the imaging socket alive every 4 s.
IMAGING_KEEPALIVE_S = 4.0
#: Longest control line we accept (comet data is > 50 kB; the proxy caps at 1 MiB).
MAX_LINE_BYTES = 1 << 20
#: Largest imaging payload we accept (a 4K RGB48 stack is ~75 MB; the proxy caps at 50 MB).
MAX_FRAME_BYTES = 128 << 20

#: Sensor geometry of the S50: portrait, 1080 wide x 1920 high, GRBG Bayer.
SENSOR_WIDTH = 1080
SENSOR_HEIGHT = 1920


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter."""

    initial_s: float = 0.25
    maximum_s: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before reconnect attempt `attempt` (0-based); `rand` is uniform in [0, 1)."""
        cap = min(self.maximum_s, self.initial_s * self.factor**attempt)
        return cap * (0.5 + 0.5 * rand)


@dataclass(slots=True)
class TelescopeTarget:
    """A telescope the app should connect to."""

    host: str
    control_port: int = CONTROL_PORT
    imaging_port: int = IMAGING_PORT
    #: Its live video in the RTSP view stages (Moon, Sun, planets, scenery).
    rtsp_port: int = RTSP_PORT
    #: The wide-angle camera's imaging and RTSP ports (used only if the model has that camera).
    wide_imaging_port: int = WIDE_IMAGING_PORT
    wide_rtsp_port: int = WIDE_RTSP_PORT
    name: str | None = None
    #: Its `product_model` if already known (discovery says it); the telescope's own
    #: `get_device_state` overrides it on every connect.
    model: str | None = None
    #: PEM private key for the firmware login handshake (7.18+), if the user has one.
    key_pem: bytes | None = None


@dataclass(slots=True)
class SiteSettings:
    """What every web server of ours is told: where it listens, and which `Host` names and
    origins it answers (`web/security.py`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Extra `Host` header values accepted besides localhost and the bind address.
    allowed_hosts: list[str] = field(default_factory=list)
    #: Extra origins accepted for state changes besides the app's own.
    allowed_origins: list[str] = field(default_factory=list)


@dataclass(slots=True)
class HostSettings(SiteSettings):
    """What every process that hosts the telescope's peer can be told: `scopelink serve` and the
    telescope-side `scopelink proxy` alike. Defaults are safe for a single local user."""

    telescopes: list[TelescopeTarget] = field(default_factory=list)
    #: Probe the network for telescopes at start-up.
    discover: bool = False
    #: Tokens and their roles ("viewer" or "operator"); empty means no token is required.
    tokens: dict[str, str] = field(default_factory=dict)
    #: Commands per second allowed per client (burst of twice that).
    command_rate: float = 10.0
    #: Append every command's audit record here (JSON lines; `services/audit.py`); none: the
    #: `scopelink.audit` log only.
    audit_log: str | None = None
    #: Keep idempotency keys in this file (JSON lines; `services/journal.py`), so a command
    #: retried after a restart is answered once, never run twice; none: in memory only.
    idempotency_journal: str | None = None
    sse_heartbeat_s: float = 15.0
    mjpeg_width: int = 540
    mjpeg_quality: int = 80
    # WebRTC (plain fields: this module must not import aiortc; the app builds its
    # `WebRtcSettings` from them). No public STUN server by default.
    #: e.g. `["stun:stun.example.org:3478"]`.
    stun_urls: list[str] = field(default_factory=list)
    #: e.g. `["turn:turn.example.org:3478?transport=udp"]`; needs `turn_secret`.
    turn_urls: list[str] = field(default_factory=list)
    #: coturn's `static-auth-secret`: TURN credentials are minted per caller and expire.
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl_s: int = 3600
    #: Concurrent WebRTC peers sent video, over all telescopes.
    max_peers: int = 16
    #: Concurrent WebRTC peers with data channels only (control and status, no video).
    max_channel_peers: int = 256
    #: A peer not connected this long after its answer is closed.
    webrtc_connect_timeout_s: float = 15.0
    #: Tier bitrates and each viewer's tier follow receivers' feedback (docs/webrtc-adaptation.md).
    webrtc_adaptive: bool = True
    #: Send the telescope's own H.264 (its Moon, Sun, planet and scenery views) to browsers
    #: unchanged where they can take it; False: always re-encode it here (for comparison).
    webrtc_passthrough: bool = True
    #: The deployment default of the WebRTC feature flag (False: the UI starts with MJPEG).
    webrtc_default: bool = True


@dataclass(slots=True)
class ServeSettings(HostSettings):
    """`scopelink serve`: the web app, with the built-in simulator when no telescope is given."""

    #: Run the built-in simulator when no telescope is configured and discovery is off.
    simulator: bool = True
    simulator_fps: float = 5.0
    #: The built-in simulator's model: "S50", "S30" or "S30 Pro" (the S30s add a wide camera).
    simulator_model: str = "S50"


@dataclass(slots=True)
class ProxySettings(HostSettings):
    """`scopelink proxy`: the app beside the telescope, linked out to a broker. It never runs
    the simulator; its LAN page needs a grant or a token (it listens beyond localhost)."""

    #: The broker's address (https://…); the link dials `wss://…/api/proxy/link`.
    broker_url: str = ""
    #: Where the proxy keeps its key pair and pairing (0700).
    state_dir: str = "~/.local/state/scopelink/proxy"
    #: A PEM certificate (or CA) to trust for the broker besides the system's: a broker with a
    #: self-signed development certificate.
    broker_ca: str | None = None


#: Port of the broker's HTTPS and WSS.
BROKER_PORT = 8443


@dataclass(slots=True)
class BrokerSettings(SiteSettings):
    """`scopelink broker`: signaling only (accounts, pairing, grants, the relay of offers)."""

    port: int = BROKER_PORT
    #: `sqlite:///path` (the default, in `state_dir`) or `postgresql://…` (several instances).
    store_url: str = ""
    #: Signaling between instances (a browser on one, its telescope's proxy on another):
    #: "local" (one instance) or "postgres" (LISTEN/NOTIFY on `store_url`'s server).
    relay: str = "local"
    #: Where the broker keeps its signing key, its database and its development certificate.
    state_dir: str = "~/.local/state/scopelink/broker"
    #: The key grants are signed with (made on first start); instances behind one address
    #: share it (copy the file). Default: `broker-signing-key.pem` in `state_dir`.
    signing_key: str | None = None
    #: TLS certificate and key (PEM); none: a self-signed one made in `state_dir` (development).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Plain HTTP/WS (tests on loopback, or behind a TLS-terminating reverse proxy).
    insecure_http: bool = False
    #: Anyone may create an account (off: only with an invitation code, once someone exists).
    open_signup: bool = True
    #: A grant's lifetime: it opens a session, the session outlives it.
    grant_ttl_s: int = 60
    #: The proxy sends a heartbeat this often; three missed and its link is closed.
    heartbeat_s: float = 15.0
    #: An API token's lifetime after sign-in.
    token_ttl_s: int = 30 * 24 * 3600
    #: Sign-in attempts per minute, per address and per account name.
    login_rate_per_min: float = 10.0
    #: Pairings started per minute per address; pairing codes typed per minute per account.
    pairing_rate_per_min: float = 10.0
    #: Connection set-ups per minute, per account and per address.
    connect_rate_per_min: float = 60.0
    #: TURN for browsers and proxies: credentials minted with coturn's shared secret.
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl_s: int = 3600
    #: This instance's name among several (the relay addresses it); default: random.
    instance: str = ""
