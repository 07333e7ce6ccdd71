"""Security (issue 10): TLS, mutual TLS, tokens with roles, SIGHUP, the
secure-by-default start-up rule, and that no token reaches the server's log.

A throwaway PKI is made with `openssl` in a temporary directory for each run
(nothing is committed): a CA that signs the server's and a client's
certificate, and another CA with its own client certificate, trusted by
nobody.
"""
import os
import secrets
import signal
import shutil
import subprocess
import time

import grpc
import numpy as np
import pytest

import npvdb
from conftest import _server_binary, clustered, make_keys, start_server, stop_checked

DIM = 8
HEALTH = "/grpc.health.v1.Health/Check"
# Distinctive tokens: the log must never contain them (or a part of them).
READ = "r-" + secrets.token_urlsafe(24)
WRITE = "w-" + secrets.token_urlsafe(24)
UNKNOWN = "u-" + secrets.token_urlsafe(24)


# ---- the throwaway PKI -------------------------------------------------------

def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, "openssl {}: {}".format(" ".join(args), r.stderr)


def _ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", name + ".key", "-out", name + ".pem",
             "-subj", "/CN=npvdb test " + name, cwd=d)


def _leaf(d, name, ca, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
             "-subj", "/CN=" + name, cwd=d)
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
             "-CAkey", ca + ".key", "-CAcreateserial", "-days", "2",
             "-out", name + ".pem", "-extfile", name + ".ext", cwd=d)


class Pki:
    def __init__(self, d):
        self.dir = d
        _ca(d, "ca")
        _ca(d, "other-ca")
        _leaf(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
              "extendedKeyUsage=serverAuth\n")
        _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
        _leaf(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def server_args(self, mutual=False):
        args = ["--tls-cert", self.path("server.pem"),
                "--tls-key", self.path("server.key")]
        if mutual:
            args += ["--tls-client-ca", self.path("ca.pem")]
        return args


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("no openssl (scripts/install-deps.sh installs it)")
    return Pki(str(tmp_path_factory.mktemp("pki")))


def _write_tokens(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)  # a reader sees the old or the new file


def assert_no_token_in_log(server, *tokens):
    log = server.log()
    for t in tokens + (READ, WRITE, UNKNOWN):
        assert t not in log and t[2:14] not in log, "a token is in the log"


def health(channel):
    """grpc.health.v1.Health/Check with an empty request: the raw reply."""
    return channel.unary_unary(HEALTH)(b"", timeout=10)


# ---- TLS -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("tls"), pki.server_args())
    yield s
    stop_checked(s)


def test_tls_client_works(tls_server, pki):
    assert "serving on" in tls_server.log() and "TLS" in tls_server.log()
    for addr in (tls_server.address, "localhost:%d" % tls_server.port):
        with npvdb.connect(addr, timeout=30, tls_ca=pki.path("ca.pem")) as db:
            db.init(make_keys(50), clustered(50, DIM), n_shards=2, replace=True)
            keys, _ = db.get_closest(clustered(50, DIM)[7], k_nearest=1)
            assert keys[0] == "k7"
    # The CA as bytes too.
    with open(pki.path("ca.pem"), "rb") as f:
        ca = f.read()
    with npvdb.connect(tls_server.address, timeout=30, tls_ca=ca) as db:
        assert db.info().vectors == 50


def test_plaintext_client_to_tls_server_fails(tls_server):
    with npvdb.connect(tls_server.address, timeout=10) as db:
        with pytest.raises(npvdb.Unavailable):
            db.info()


def test_client_trusting_another_ca_fails(tls_server, pki):
    with npvdb.connect(tls_server.address, timeout=10,
                       tls_ca=pki.path("other-ca.pem")) as db:
        with pytest.raises(npvdb.Unavailable):
            db.info()


def test_tls_arguments_are_checked(pki):
    with pytest.raises(npvdb.InvalidArgument, match="tls_cert and tls_key"):
        npvdb.connect("127.0.0.1:1", tls_ca=pki.path("ca.pem"),
                      tls_cert=pki.path("client.pem"))
    with pytest.raises(FileNotFoundError):
        npvdb.connect("127.0.0.1:1", tls_ca=pki.path("absent.pem"))
    with pytest.raises(npvdb.InvalidArgument, match="not both"):
        npvdb.connect("127.0.0.1:1", tls_ca=pki.path("ca.pem"),
                      credentials=grpc.ssl_channel_credentials())


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("mtls"), pki.server_args(True))
    yield s
    stop_checked(s)


def test_mtls_refuses_a_client_without_a_certificate(mtls_server, pki):
    assert "mutual TLS" in mtls_server.log()
    with npvdb.connect(mtls_server.address, timeout=10,
                       tls_ca=pki.path("ca.pem")) as db:
        with pytest.raises(npvdb.Unavailable):
            db.info()


def test_mtls_refuses_a_certificate_of_another_ca(mtls_server, pki):
    with npvdb.connect(mtls_server.address, timeout=10,
                       tls_ca=pki.path("ca.pem"),
                       tls_cert=pki.path("stranger.pem"),
                       tls_key=pki.path("stranger.key")) as db:
        with pytest.raises(npvdb.Unavailable):
            db.info()


def test_mtls_accepts_a_certificate_the_ca_signed(mtls_server, pki):
    with npvdb.connect(mtls_server.address, timeout=30,
                       tls_ca=pki.path("ca.pem"),
                       tls_cert=pki.path("client.pem"),
                       tls_key=pki.path("client.key")) as db:
        db.init(make_keys(20), clustered(20, DIM), n_shards=1, replace=True)
        assert db.info().vectors == 20


def test_unreadable_tls_files_stop_the_start(pki, tmp_path):
    cases = [
        (["--tls-cert", pki.path("server.pem"), "--tls-key",
          str(tmp_path / "absent.key")], "--tls-key"),
        (["--tls-cert", pki.path("server.ext"), "--tls-key",
          pki.path("server.key")], "no PEM block"),
        (pki.server_args() + ["--tls-client-ca", str(tmp_path / "nope")],
         "--tls-client-ca"),
    ]
    for args, want in cases:
        r = run_briefly(tmp_path, args)
        assert r.returncode != 0 and want in r.stderr, r.stderr
    r = run_briefly(tmp_path, ["--tls-cert", pki.path("server.pem")])
    assert r.returncode == 2 and "--tls-key" in r.stderr


# ---- tokens and roles --------------------------------------------------------

@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    path = str(d / "tokens.txt")
    _write_tokens(path, "# who may call\n{} read\n\n{} write\n".format(READ, WRITE))
    s = start_server(d, ["--token-file", path])
    yield s
    assert_no_token_in_log(s)
    stop_checked(s)


@pytest.fixture(scope="module")
def loaded(token_server):
    with npvdb.connect(token_server.address, timeout=30, token=WRITE) as db:
        db.init(make_keys(100), clustered(100, DIM), n_shards=4, replace=True)
        db.init(make_keys(5), clustered(5, DIM), n_shards=1, replace=True,
                collection="other")
    return token_server


def every_call(db):
    """One call of each kind the client makes, by method, read ones first."""
    q = clustered(100, DIM)[3]
    return [
        ("GetClosest", lambda: db.get_closest(q, k_nearest=2, stream=True)),
        ("Search", lambda: db.get_closest(q, k_nearest=2)),
        ("Get", lambda: db.get(["k1"])),
        ("Info", lambda: db.info()),
        ("Count", lambda: db.count()),
        ("Scroll", lambda: list(db.scroll(batch_size=50))),
        ("ListCollections", lambda: db.collections()),
        ("Insert", lambda: db.insert(["new"], np.ones(DIM))),
        ("Delete", lambda: db.delete(["new"])),
        ("Snapshot", lambda: db.snapshot()),
        ("Init", lambda: db.init(["x"], np.ones((1, DIM)), collection="made",
                                 replace=True)),
        ("DropCollection", lambda: db.drop("made")),
    ]


READ_METHODS = {"GetClosest", "Search", "Get", "Info", "Count", "Scroll",
                "ListCollections"}


def test_no_token_is_unauthenticated(loaded):
    with npvdb.connect(loaded.address, timeout=30) as db:
        for name, call in every_call(db):
            with pytest.raises(npvdb.Unauthenticated, match="no token") as e:
                call()
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED, name


def test_unknown_token_is_unauthenticated(loaded):
    with npvdb.connect(loaded.address, timeout=30, token=UNKNOWN) as db:
        for name, call in every_call(db):
            with pytest.raises(npvdb.Unauthenticated, match="unknown token"):
                call()
    # A token that only starts like a real one, or is one plus a byte.
    for near in (READ[:-1], READ + "x", WRITE.upper()):
        with npvdb.connect(loaded.address, timeout=30, token=near) as db:
            with pytest.raises(npvdb.Unauthenticated):
                db.info()


def test_read_token_reads_and_cannot_write(loaded):
    with npvdb.connect(loaded.address, timeout=30, token=READ) as db:
        keys, _ = db.get_closest(clustered(100, DIM)[3], k_nearest=1)
        assert keys[0] == "k3"
        for name, call in every_call(db):
            if name in READ_METHODS:
                call()
                continue
            with pytest.raises(npvdb.PermissionDenied) as e:
                call()
            assert "needs a write token" in e.value.message, name
        assert db.info().vectors == 100  # nothing written
        assert "made" not in [c.name for c in db.collections()]


def test_write_token_works_everywhere(loaded):
    with npvdb.connect(loaded.address, timeout=30, token=WRITE) as db:
        for name, call in every_call(db):
            call()
        assert db.info().vectors == 100
        assert db.info(collection="other").vectors == 5


def test_health_needs_no_token(loaded):
    with grpc.insecure_channel(loaded.address) as ch:
        assert health(ch) == b"\x08\x01"  # status: SERVING
        # Any other method does, and an unknown one is UNIMPLEMENTED only
        # for a caller with a token.
        nope = ch.unary_unary("/npvdb.v1.VectorDB/Nope")
        with pytest.raises(grpc.RpcError) as e:
            nope(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            nope(b"", timeout=10, metadata=[("authorization", "Bearer " + READ)])
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # "Bearer" is case-insensitive; another scheme is not a token.
        info = ch.unary_unary("/npvdb.v1.VectorDB/Info")
        info(b"", timeout=10, metadata=[("authorization", "bearer " + READ)])
        with pytest.raises(grpc.RpcError) as e:
            info(b"", timeout=10, metadata=[("authorization", "Basic " + READ)])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in e.value.details()


def denied_deletes(server):
    return [ln for ln in server.log().splitlines()
            if "refused /npvdb.v1.VectorDB/Delete" in ln
            and ln.endswith(": read token, the method needs write")]


def test_refusals_are_logged_with_role_and_peer_not_token(loaded):
    # At most 20 refusals a second are logged (the tests above made more):
    # repeat until one lands in a fresh second.
    deadline = time.monotonic() + 10
    with npvdb.connect(loaded.address, timeout=30, token=READ) as db:
        while not denied_deletes(loaded):
            assert time.monotonic() < deadline, loaded.log()
            with pytest.raises(npvdb.PermissionDenied):
                db.delete(["k1"])
            time.sleep(0.1)
    line = denied_deletes(loaded)[-1]
    assert " from ipv4:127.0.0.1:" in line, line
    assert_no_token_in_log(loaded)


def test_the_client_checks_its_token():
    for bad in ("", "two words", "tab\there", "é"):
        with pytest.raises(npvdb.InvalidArgument):
            npvdb.connect("127.0.0.1:1", token=bad)


def test_token_from_the_environment(loaded, monkeypatch):
    # token=None: $NPVDB_TOKEN, as the CLI; an explicit token wins.
    monkeypatch.setenv("NPVDB_TOKEN", READ)
    with npvdb.connect(loaded.address, timeout=30) as db:
        assert db.info().vectors == 100
        with pytest.raises(npvdb.PermissionDenied):
            db.delete(["k1"])
    with npvdb.connect(loaded.address, timeout=30, token=UNKNOWN) as db:
        with pytest.raises(npvdb.Unauthenticated, match="unknown token"):
            db.info()
    with npvdb.VectorDB(address=loaded.address, timeout=30) as db:
        assert db.info().vectors == 100
    # Empty is unset; a malformed one is refused, naming the variable and
    # not the token.
    monkeypatch.setenv("NPVDB_TOKEN", "")
    with npvdb.connect(loaded.address, timeout=30) as db:
        with pytest.raises(npvdb.Unauthenticated, match="no token"):
            db.info()
    monkeypatch.setenv("NPVDB_TOKEN", "two words")
    with pytest.raises(npvdb.InvalidArgument, match=r"\$NPVDB_TOKEN") as e:
        npvdb.connect(loaded.address)
    assert "two words" not in str(e.value)


def test_address_from_the_environment(loaded, monkeypatch):
    # connect(), Client() and VectorDB() without an address dial
    # $NPVDB_ADDRESS, else 127.0.0.1:50051: the same variable as the CLI.
    monkeypatch.setenv("NPVDB_ADDRESS", loaded.address)
    assert npvdb.default_address() == loaded.address
    for make in (lambda: npvdb.connect(timeout=30, token=READ),
                 lambda: npvdb.Client(timeout=30, token=READ),
                 lambda: npvdb.VectorDB(timeout=30, token=READ)):
        with make() as db:
            assert db.address == loaded.address
            assert db.info().vectors == 100
    # An explicit address wins.
    with npvdb.connect("127.0.0.1:1", timeout=5, token=READ) as db:
        assert db.address == "127.0.0.1:1"
        with pytest.raises(npvdb.Unavailable):
            db.info()
    monkeypatch.delenv("NPVDB_ADDRESS")
    assert npvdb.default_address() == npvdb.DEFAULT_ADDRESS == "127.0.0.1:50051"
    with npvdb.connect() as db:  # lazy: nothing is dialled yet
        assert db.address == "127.0.0.1:50051"


def test_tls_with_tokens(pki, tmp_path):
    path = str(tmp_path / "tokens")
    _write_tokens(path, "{} write\n".format(WRITE))
    s = start_server(tmp_path, pki.server_args() + ["--token-file", path])
    try:
        with npvdb.connect(s.address, timeout=30, tls_ca=pki.path("ca.pem"),
                           token=WRITE) as db:
            db.init(make_keys(10), clustered(10, DIM), n_shards=1)
            assert db.count() == 10
        with npvdb.connect(s.address, timeout=30,
                           tls_ca=pki.path("ca.pem")) as db:
            with pytest.raises(npvdb.Unauthenticated):
                db.count()
        creds = grpc.ssl_channel_credentials(open(pki.path("ca.pem"), "rb").read())
        with grpc.secure_channel(s.address, creds) as ch:
            assert health(ch) == b"\x08\x01"
        assert_no_token_in_log(s)
    finally:
        stop_checked(s)


# ---- SIGHUP ------------------------------------------------------------------

def wait_log(server, text, count=1, seconds=10):
    deadline = time.monotonic() + seconds
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, "no '{}' in:\n{}".format(text, server.log())
        time.sleep(0.05)


def test_sighup_rereads_the_token_file(tmp_path):
    old, new, kept = ("o-" + secrets.token_hex(16), "n-" + secrets.token_hex(16),
                      "k-" + secrets.token_hex(16))
    path = str(tmp_path / "tokens")
    _write_tokens(path, "{} write\n{} read\n".format(old, kept))
    s = start_server(tmp_path, ["--token-file", path])
    try:
        with npvdb.connect(s.address, timeout=30, token=old) as db_old, \
                npvdb.connect(s.address, timeout=30, token=kept) as db_kept:
            db_old.init(make_keys(30), clustered(30, DIM), n_shards=2)
            assert db_kept.count() == 30  # its channel is open from here on

            _write_tokens(path, "{} write\n{} read\n".format(new, kept))
            s.proc.send_signal(signal.SIGHUP)
            wait_log(s, "SIGHUP: 2 tokens")
            with pytest.raises(npvdb.Unauthenticated):
                db_old.count()  # revoked, on its open channel too
            assert db_kept.count() == 30  # the open channel keeps working
            with npvdb.connect(s.address, timeout=30, token=new) as db_new:
                db_new.insert(["fresh"], np.ones(DIM))
                assert db_new.count() == 31

            # A bad file on reload keeps the table in use and says why.
            _write_tokens(path, "{} write\nbroken line here\n".format(old))
            s.proc.send_signal(signal.SIGHUP)
            wait_log(s, "SIGHUP: kept the 2 tokens in use")
            assert ":2: expected 'TOKEN ROLE'" in s.log()
            assert db_kept.count() == 31
            with pytest.raises(npvdb.Unauthenticated):
                db_old.count()
        assert s.proc.poll() is None
        assert_no_token_in_log(s, old, new, kept)
    finally:
        stop_checked(s)


# ---- start-up rules -----------------------------------------------------------

def run_briefly(tmp_path, args, env=None, seconds=30):
    """Runs the server expecting it to exit by itself (refusing to start)."""
    data = tmp_path / ("data%d" % len(os.listdir(tmp_path)))
    return subprocess.run(
        [_server_binary(), "--listen", "127.0.0.1:0", "--data-dir", str(data),
         *args], capture_output=True, text=True, timeout=seconds,
        env=env)


def test_malformed_token_file_stops_the_start(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# fine\n{} read\n\n{} writer\n".format(READ, WRITE))
    r = run_briefly(tmp_path, ["--token-file", str(path)])
    assert r.returncode != 0
    assert "{}:4: the role".format(path) in r.stderr, r.stderr
    assert WRITE not in r.stderr and READ not in r.stderr
    path.write_text("{} read\n{} write\n".format(READ, READ))
    r = run_briefly(tmp_path, ["--token-file", str(path)])
    assert r.returncode != 0 and ":2: the same token as on line 1" in r.stderr
    r = run_briefly(tmp_path, ["--token-file", str(tmp_path / "absent")])
    assert r.returncode != 0 and "cannot read token file" in r.stderr


def test_non_loopback_needs_auth_or_insecure(tmp_path, pki):
    r = run_briefly(tmp_path, ["--listen", "0.0.0.0:0"])
    assert r.returncode != 0
    assert "--insecure" in r.stderr and "0.0.0.0:0" in r.stderr, r.stderr
    assert "serving" not in r.stderr
    path = str(tmp_path / "tokens")
    _write_tokens(path, "{} write\n".format(WRITE))
    for args in (["--insecure"], ["--token-file", path],
                 pki.server_args(True)):
        d = tmp_path / ("ok%d" % len(os.listdir(tmp_path)))
        d.mkdir()
        s = start_server(d, ["--listen", "0.0.0.0:0", *args])
        try:
            tls = {}
            if "--tls-client-ca" in args:
                tls = dict(tls_ca=pki.path("ca.pem"),
                           tls_cert=pki.path("client.pem"),
                           tls_key=pki.path("client.key"))
            token = WRITE if "--token-file" in args else None
            with npvdb.connect(s.address, timeout=30, token=token, **tls) as db:
                assert not db.info().initialized
        finally:
            stop_checked(s)


def test_token_file_from_the_environment(tmp_path, monkeypatch):
    path = str(tmp_path / "tokens")
    _write_tokens(path, "{} read\n".format(READ))
    monkeypatch.setenv("NPVDB_TOKEN_FILE", path)
    d = tmp_path / "srv"
    d.mkdir()
    s = start_server(d, ["--listen", "0.0.0.0:0"])  # allowed: it has tokens
    try:
        with npvdb.connect(s.address, timeout=30) as db:
            with pytest.raises(npvdb.Unauthenticated):
                db.info()
        with npvdb.connect(s.address, timeout=30, token=READ) as db:
            assert not db.info().initialized
        assert "1 token from " + path in s.log()
    finally:
        stop_checked(s)
