"""The outbound guard (server/http/outbound.py) on real sockets: internal addresses refused in every spelling, the
allowlist, connections only to the checked address (no second lookup), TLS for the host name, no redirects."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.http.outbound import OutboundGuard, OutboundRefused, PinnedBackend, Target, guarded_client, parse_url
from server.internal_addresses import is_internal, parse_allowlist
from server.settings import Settings, SettingsError

INTERNAL_URLS = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://127.0.0.1:8000/", "http://127.9.9.9/", "http://[::1]:8000/",  # loopback
    "http://10.0.0.5/", "http://172.16.3.4/", "http://172.31.255.255/", "http://192.168.1.1/",  # private
    "http://[fc00::1]/", "http://[fd12:3456::1]/",  # unique local
    "http://[fe80::1]/", "http://169.254.1.1/",  # link-local
    "http://224.0.0.1/", "http://[ff02::1]/",  # multicast
    "http://0.0.0.0/", "http://[::]/",  # unspecified
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/", "http://[::ffff:10.0.0.1]/",  # IPv4-mapped
    "http://100.64.0.1/",  # carrier-grade NAT (shared)
    "http://240.0.0.1/", "http://255.255.255.255/",  # reserved, broadcast
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/",  # NAT64 and 6to4 around internal IPv4
    "http://2130706433/", "http://0x7f.1/", "http://127.1/",  # other spellings of 127.0.0.1
]


class Receiver:
    """A real HTTP(S) server on 127.0.0.1 that records requests and answers with ``reply`` (status, headers)."""

    def __init__(self, reply: tuple[int, dict[str, str]] = (200, {}), tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers)})
                status, headers = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "19")
                self.end_headers()
                self.wfile.write(b"internal secret 42\n")

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def guard(allowlist: str = "") -> OutboundGuard:
    return OutboundGuard(Settings(outbound_allowlist=allowlist, webhook_timeout=5))


@pytest.mark.parametrize("url", INTERNAL_URLS)
async def test_every_internal_address_family_is_refused(url: str):
    with pytest.raises(OutboundRefused) as info:
        await guard().check(url)
    assert info.value.reason == "internal" and info.value.code == "URL_NOT_ALLOWED"
    assert "internal address" in info.value.message and "VOXLANE_OUTBOUND_ALLOWLIST" in info.value.message


async def test_public_addresses_pass_and_bad_urls_do_not():
    for url in ("http://8.8.8.8/hook", "https://[2606:4700:4700::1111]:8443/x", "http://[::ffff:8.8.8.8]/"):
        target = await guard().check(url)
        assert target.addresses and not any(is_internal(ipaddress.ip_address(a)) for a in target.addresses)
    for url in ("ftp://8.8.8.8/", "file:///etc/passwd", "gopher://8.8.8.8/", "http://user:pw@8.8.8.8/",
                "http://:80/", "//8.8.8.8/", "not a url"):
        with pytest.raises(OutboundRefused) as info:
            await guard().check(url)
        assert info.value.reason == "url", url
    with pytest.raises(OutboundRefused) as info:
        await guard().check("http://no-such-host.invalid/")
    assert info.value.code == "URL_UNRESOLVABLE"


async def test_a_host_name_resolving_to_loopback_is_refused_and_the_allowlist_lets_it_through():
    with pytest.raises(OutboundRefused) as info:
        await guard().check("http://localhost:9/")
    assert "localhost resolves to an internal address" in info.value.message
    assert "127.0.0.1" not in info.value.message, "a user is not told what a name resolves to"
    assert (await guard("localhost").check("http://LOCALHOST:9/")).port == 9  # a host name entry
    assert (await guard("127.0.0.0/8, ::1").check("http://localhost:9/")).addresses  # or its addresses
    assert (await guard("10.0.0.0/8").check("http://10.1.2.3/")).addresses == ("10.1.2.3",)
    assert (await guard("10.0.0.0/8").check("http://[::ffff:10.1.2.3]/")).addresses  # mapped: the same address
    with pytest.raises(OutboundRefused):
        await guard("10.0.0.0/8").check("http://192.168.0.1/")  # only what it names
    assert parse_allowlist(" 10.0.0.1/8 , Hooks.Internal.,fd00::/8,").hosts == {"hooks.internal"}
    for bad in ("10.0.0.0/33", "http://x", "a b"):
        with pytest.raises(ValueError):
            parse_allowlist(bad)
        with pytest.raises(SettingsError, match="VOXLANE_OUTBOUND_ALLOWLIST"):
            Settings.from_sources({}, env={"VOXLANE_OUTBOUND_ALLOWLIST": bad})


async def test_a_request_is_checked_when_it_is_sent_and_redirects_are_not_followed():
    inside = Receiver()
    redirecting = Receiver((302, {"Location": f"http://127.0.0.1:{inside.port}/moved"}))
    try:
        allowlist = "127.0.0.1/32"
        settings = Settings(outbound_allowlist=allowlist, webhook_timeout=5)
        async with guarded_client(OutboundGuard(settings)) as client:
            r = await client.post(f"http://127.0.0.1:{inside.port}/hook", content=b"{}")
            assert r.status_code == 200 and len(inside.requests) == 1
            r = await client.post(f"http://127.0.0.1:{redirecting.port}/hook", content=b"{}")
            assert r.status_code == 302 and len(redirecting.requests) == 1
            assert len(inside.requests) == 1, "the redirect was not followed"
            settings.outbound_allowlist = ""  # the same client, the allowlist changed: checked again, nothing sent
            with pytest.raises(OutboundRefused):
                await client.post(f"http://127.0.0.1:{inside.port}/hook", content=b"{}")
            with pytest.raises(OutboundRefused):  # not even over the connection the pool kept open
                await client.post(f"http://127.0.0.1:{redirecting.port}/hook", content=b"{}", follow_redirects=True)
        assert len(inside.requests) == 1 and len(redirecting.requests) == 1
    finally:
        inside.close()
        redirecting.close()


class ResolvedOnce(OutboundGuard):
    """What a rebinding DNS server's first answer gives the guard: the name stands for a checked address.
    'rebind.invalid' has no DNS record at all, so a connection that looked the name up again would fail."""

    async def check(self, url):
        parsed = parse_url(url)
        return Target(parsed, parsed.host, parsed.port or 80, ("127.0.0.1",))


async def test_the_connection_goes_to_the_checked_address_with_the_original_host_header():
    receiver = Receiver()
    try:
        async with guarded_client(ResolvedOnce(Settings())) as client:
            r = await client.post(f"http://rebind.invalid:{receiver.port}/hook", content=b"{}")
        assert r.status_code == 200
        assert receiver.requests[0]["headers"]["Host"] == f"rebind.invalid:{receiver.port}"
    finally:
        receiver.close()
    with pytest.raises(httpcore.ConnectError):  # no checked target in this task: fail closed
        await PinnedBackend().connect_tcp("127.0.0.1", receiver.port)


def certificate_for(name: str, tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for the DNS name ``name`` only (no IP address in it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_is_for_the_host_name_not_the_pinned_address(tmp_path: Path):
    cert, key = certificate_for("localhost", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_tls)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with guarded_client(guard("localhost"), ssl_context=trust) as client:
            r = await client.post(f"https://localhost:{receiver.port}/hook", content=b"{}")
            assert r.status_code == 200 and receiver.server_names == ["localhost"], "SNI names the host"
            assert receiver.requests[0]["headers"]["Host"] == f"localhost:{receiver.port}"
        async with guarded_client(guard("127.0.0.1/32"), ssl_context=trust) as client:
            with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate|hostname"):
                await client.post(f"https://127.0.0.1:{receiver.port}/hook", content=b"{}")  # cert is not for the IP
        assert len(receiver.requests) == 1
    finally:
        receiver.close()
