#!/usr/bin/python3
"""End-to-end tests of rollblockd: the real binary on free loopback ports,
driven by real Redis clients (python3-redis, redis-cli), by raw sockets where
the exact bytes matter, and by a CAF remote_actor client.

    /usr/bin/python3 rollblockd_test.py <rollblockd> [<caf_remote_client>] \
        [unittest args ...]

The paths may also come from $ROLLBLOCKD and $CAF_REMOTE_CLIENT. Run it with
/usr/bin/python3: Debian's python3-redis is not visible to other Pythons.
"""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import redis

ROLLBLOCKD = os.environ.get("ROLLBLOCKD")
CAF_CLIENT = os.environ.get("CAF_REMOTE_CLIENT")

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0
IO_TIMEOUT = 30.0

# Every daemon any test started, killed in tearDown (and at exit), with its
# log file; every raw socket, closed in tearDown.
_PROCESSES = []
_FILES = []


def _kill_all():
    while _PROCESSES:
        p = _PROCESSES.pop()
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    while _FILES:
        _FILES.pop().close()


def free_port():
    """A port free on loopback right now (for the tests that need a fixed
    port; the others start the daemon with --port 0)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def key(name, width=8):
    """`name` zero-padded on the right to the key width, as the daemon does."""
    if isinstance(name, str):
        name = name.encode()
    assert len(name) <= width
    return name + b"\0" * (width - len(name))


# -- a raw RESP client, for exact bytes ----------------------------------------


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Raw:
    """A RESP connection over a plain socket. read() returns a reply as:
    ('+', text) for a simple string, ('-', text) for an error, int, bytes
    (bulk), None (nil) or a list."""

    def __init__(self, port, host=HOST, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        _FILES.append(self.sock)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, *args):
        self.send(encode(*args))
        return self.read()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the server closed the connection")
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def read_bytes(self, n):
        """Exactly the next n bytes of the reply stream."""
        return self._exact(n)

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return ("+", rest.decode(errors="surrogateescape"))
        if kind == b"-":
            return ("-", rest.decode(errors="surrogateescape"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            assert data[-2:] == b"\r\n", data[-2:]
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self.read() for _ in range(n)]
        raise AssertionError("bad reply line %r" % line)

    def wait_closed(self, timeout=10.0):
        """True when the server closes the connection (EOF or reset) within
        `timeout` seconds, with nothing more to read."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(1 << 16)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
                self.buf += chunk
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    def unread(self):
        return bytes(self.buf[self.pos :])


def err(text):
    return ("-", text)


OK = ("+", "OK")
PONG = ("+", "PONG")
NOT_INTEGER = err("ERR value is not an integer or out of range")


def wrong_args(name):
    return err("ERR wrong number of arguments for '%s' command" % name)


# -- the daemon -----------------------------------------------------------------


class Daemon:
    """One rollblockd process with its own log file."""

    def __init__(self, data_dir, *flags, log_path=None, port_flag=True,
                 wait=True):
        self.data_dir = data_dir
        self.log_path = log_path or (data_dir.rstrip("/") + ".%d.log" %
                                     random.randrange(1 << 30))
        self.flags = list(flags)
        args = [ROLLBLOCKD]
        if data_dir is not None:
            args += ["--data-dir", data_dir]
        if port_flag:
            args += ["--port", "0"]
        args += self.flags
        self.args = args
        self.log = open(self.log_path, "wb")
        _FILES.append(self.log)
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _PROCESSES.append(self.proc)
        self.port = self.caf_port = self.metrics_port = None
        if wait:
            self.wait_ready()

    @property
    def pid(self):
        return self.proc.pid

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_for_log(self, pattern, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                m = re.search(pattern, self.text())
                if m:
                    return m
                raise AssertionError(
                    "rollblockd exited with %d before logging %r:\n%s"
                    % (self.proc.returncode, pattern, self.text()))
            time.sleep(0.01)
        raise AssertionError("rollblockd did not log %r within %.0f s:\n%s"
                             % (pattern, timeout, self.text()))

    def wait_ready(self):
        m = self.wait_for_log(r"serving RESP on ([0-9.]+):(\d+)\n")
        self.bound = m.group(1)
        self.port = int(m.group(2))
        if "--caf-port" in self.flags:
            m = self.wait_for_log(r"serving CAF clients on 127\.0\.0\.1:(\d+)\n")
            self.caf_port = int(m.group(1))
        if "--metrics-port" in self.flags:
            m = self.wait_for_log(
                r"serving /metrics and /health on 127\.0\.0\.1:(\d+)\n")
            self.metrics_port = int(m.group(1))
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", IO_TIMEOUT)
        kw.setdefault("socket_connect_timeout", 10)
        return redis.Redis(host=HOST, port=self.port, **kw)

    def raw(self):
        return Raw(self.port)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT):
        rc = self.proc.wait(timeout=timeout)
        self.log.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait()

    def stop(self):
        """SIGTERM; returns the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait()


def run_daemon(*args, timeout=20, cwd=None):
    """Runs rollblockd to completion (for flag errors), in `cwd` (default: a
    fresh empty directory, so a stray ./data would show); returns
    (exit code, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="rollblockd-cwd-") as tmp:
        p = subprocess.run([ROLLBLOCKD] + list(args), capture_output=True,
                           timeout=timeout, stdin=subprocess.DEVNULL,
                           cwd=cwd or tmp)
        if cwd is None and os.listdir(tmp):
            raise AssertionError("rollblockd %s created %s" % (
                args, os.listdir(tmp)))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def parse_info(bulk):
    """INFO's bulk as [(section, [(name, value), ...]), ...], checking the
    layout: '# Title' headers, name:value lines, CRLF endings, one empty line
    between sections."""
    text = bulk.decode()
    assert text.endswith("\r\n"), repr(text[-10:])
    sections = []
    for block in text[:-2].split("\r\n\r\n"):
        lines = block.split("\r\n")
        assert lines[0].startswith("# "), lines
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep == ":" and name, line
            fields.append((name, value))
        sections.append((lines[0][2:], fields))
    return sections


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rollblockd-e2e-")

    def tearDown(self):
        _kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self, *flags, data="data", **kw):
        return Daemon(self.path(data) if data else None, *flags, **kw)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def heights(self, raw):
        return raw.cmd("BLOCK.HEIGHTS")

    def info(self, raw, *sections):
        return dict(kv for _, fields in parse_info(raw.cmd("INFO", *sections))
                    for kv in fields)


# -- the protocol table -----------------------------------------------------------


class ProtocolTest(Base):
    def setUp(self):
        super().setUp()
        self.d = self.start()
        self.r = self.d.raw()

    def test_ping_exact_bytes_and_arity(self):
        self.r.send(b"*1\r\n$4\r\nPING\r\n")
        self.assertEqual(self.r.read_bytes(7), b"+PONG\r\n")
        self.r.send(encode("ping", "hello"))
        self.assertEqual(self.r.read_bytes(11), b"$5\r\nhello\r\n")
        self.assertEqual(self.r.cmd("PING", "a", "b"), wrong_args("ping"))
        # Inline commands, as telnet or redis-cli without RESP would send.
        self.r.send(b"PING\r\nping \"x y\"\r\n")
        self.assertEqual(self.r.read(), PONG)
        self.assertEqual(self.r.read(), b"x y")
        self.assertTrue(self.d.client().ping())

    def test_apply_get_mget_and_their_errors(self):
        r = self.r
        self.assertEqual(r.cmd("GET", "k1"), None)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [0, 0, 0])
        # Genesis at height 0 on an empty store, once.
        self.assertEqual(r.cmd("BLOCK.APPLY", 0, "k1", "v1", "k2", "v2"), 0)
        self.assertEqual(r.cmd("GET", "k1"), b"v1")
        self.assertEqual(r.cmd("get", key("k2")), b"v2")
        self.assertEqual(r.cmd("BLOCK.APPLY", 0, "k1", "x"), err(
            "ERR block_id_not_increasing: block 0 is not above the applied "
            "height 0"))
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k1", "v1b", "k3", "v3"), 1)
        # Gaps are allowed; an empty value deletes.
        self.assertEqual(r.cmd("BLOCK.APPLY", 7, "k2", ""), 7)
        self.assertEqual(r.cmd("MGET", "k1", "k2", "k3", "nope"),
                         [b"v1b", None, b"v3", None])
        self.assertEqual(r.cmd("BLOCK.APPLY", 7, "k1", "x"), err(
            "ERR block_id_not_increasing: block 7 is not above the applied "
            "height 7"))
        self.assertEqual(r.cmd("BLOCK.APPLY", 3, "k1", "x"), err(
            "ERR block_id_not_increasing: block 3 is not above the applied "
            "height 7"))
        # A block without operations moves the height.
        self.assertEqual(r.cmd("BLOCK.APPLY", 8), 8)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [8, 8])
        # Arity and integers.
        self.assertEqual(r.cmd("GET"), wrong_args("get"))
        self.assertEqual(r.cmd("GET", "a", "b"), wrong_args("get"))
        self.assertEqual(r.cmd("MGET"), wrong_args("mget"))
        self.assertEqual(r.cmd("BLOCK.APPLY"), wrong_args("block.apply"))
        self.assertEqual(r.cmd("BLOCK.APPLY", 9, "k1"),
                         wrong_args("block.apply"))
        self.assertEqual(r.cmd("BLOCK.APPLY", 9, "k1", "v", "k2"),
                         wrong_args("block.apply"))
        for bad in ("x", "-1", "1.5", "", " 9", "18446744073709551616"):
            self.assertEqual(r.cmd("BLOCK.APPLY", bad, "k1", "v"),
                             NOT_INTEGER, bad)
        # Keys longer than the width are refused; nothing of the block lands.
        self.assertEqual(r.cmd("BLOCK.APPLY", 9, "k1", "new", "123456789",
                               "v"), err(
            "ERR key_width_mismatch: operation 1 of block 9 has a 9-byte "
            "key; this store's keys are 8 bytes"))
        self.assertEqual(r.cmd("GET", "123456789"), err(
            "ERR key_width_mismatch: a 9-byte key was given; this store's "
            "keys are 8 bytes"))
        self.assertEqual(r.cmd("MGET", "k1", "123456789"), err(
            "ERR key_width_mismatch: a 9-byte key was given; this store's "
            "keys are 8 bytes"))
        self.assertEqual(r.cmd("GET", "k1"), b"v1b")
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[0], 8)
        # Command names are case-insensitive.
        self.assertEqual(r.cmd("Block.Apply", 9, "k1", "v9"), 9)
        self.assertEqual(r.cmd("mget", "k1"), [b"v9"])

    def test_apply_repeated_key_keeps_the_last_write(self):
        r = self.r
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "a", "1", "a", "2", "b", "3",
                               "b", ""), 1)
        self.assertEqual(r.cmd("MGET", "a", "b"), [b"2", None])

    def test_values_at_the_size_limit(self):
        r = self.r
        big = bytes(random.Random(1).randrange(256) for _ in range(65535))
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "big", big), 1)
        self.assertEqual(r.cmd("GET", "big"), big)
        self.assertEqual(self.d.client().get(key("big")), big)
        too_big = big + b"x"
        self.assertEqual(r.cmd("BLOCK.APPLY", 2, "other", "v", "big",
                               too_big), err(
            "ERR value_too_large: operation 1 of block 2 has a 65536-byte "
            "value; the limit is 65535 bytes"))
        self.assertEqual(r.cmd("MGET", "big", "other"), [big, None])
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [1, 1])
        self.assertEqual(r.cmd("BLOCK.POP", 2, "big"), big)
        self.assertEqual(r.cmd("GET", "big"), None)

    def test_binary_keys_and_values_with_zero_bytes(self):
        c = self.d.client()
        k7 = b"\x00a\x00\xff\r\n\x00"        # 7 bytes: padded with one zero
        k8 = b"\x00a\x00\xff\r\n\x00\x00"    # the same key, spelt out
        v = bytes(range(256)) * 3 + b"\r\n\x00"
        self.assertEqual(c.execute_command("BLOCK.APPLY", 1, k7, v,
                                           b"\x00" * 8, b"\x00zero\x00"), 1)
        self.assertEqual(c.get(k7), v)
        self.assertEqual(c.get(k8), v)
        self.assertEqual(c.get(b""), b"\x00zero\x00")
        self.assertEqual(c.get(b"\x00"), b"\x00zero\x00")
        self.assertEqual(c.mget([k8, b"\x00" * 8, b"\x00a\x00\xff"]),
                         [v, b"\x00zero\x00", None])
        self.assertEqual(self.r.cmd("BLOCK.POP", 2, k8), v)
        self.assertEqual(c.get(k7), None)

    def test_pop(self):
        r = self.r
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "a", "va", "b", "vb"), 1)
        self.assertEqual(r.cmd("BLOCK.POP", 2, "a"), b"va")
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [2, 2])
        self.assertEqual(r.cmd("MGET", "a", "b"), [None, b"vb"])
        # Popping an absent key still commits the block.
        self.assertEqual(r.cmd("BLOCK.POP", 5, "a"), None)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [5, 5])
        self.assertEqual(r.cmd("BLOCK.POP", 5, "b"), err(
            "ERR block_id_not_increasing: block 5 is not above the applied "
            "height 5"))
        self.assertEqual(r.cmd("BLOCK.POP", 6, "123456789"), err(
            "ERR key_width_mismatch: operation 0 of block 6 has a 9-byte "
            "key; this store's keys are 8 bytes"))
        self.assertEqual(r.cmd("BLOCK.POP", "x", "b"), NOT_INTEGER)
        self.assertEqual(r.cmd("BLOCK.POP", 6), wrong_args("block.pop"))
        self.assertEqual(r.cmd("BLOCK.POP", 6, "b", "c"),
                         wrong_args("block.pop"))
        self.assertEqual(r.cmd("GET", "b"), b"vb")
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [5, 5])

    def test_revert(self):
        r = self.r
        for h in range(1, 6):
            self.assertEqual(r.cmd("BLOCK.APPLY", h, "k", "v%d" % h,
                                   "only%d" % h, "x"), h)
        self.assertEqual(r.cmd("BLOCK.REVERT", 6), err(
            "ERR rollback_target_ahead: cannot revert to block 6: it is above "
            "the applied height 5"))
        self.assertEqual(r.cmd("BLOCK.REVERT", "x"), NOT_INTEGER)
        self.assertEqual(r.cmd("BLOCK.REVERT", "-1"), NOT_INTEGER)
        self.assertEqual(r.cmd("BLOCK.REVERT"), wrong_args("block.revert"))
        self.assertEqual(r.cmd("BLOCK.REVERT", 1, 2),
                         wrong_args("block.revert"))
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [5, 5])
        self.assertEqual(r.cmd("BLOCK.REVERT", 5), 5)
        self.assertEqual(r.cmd("BLOCK.REVERT", 3), 3)
        # Within the checkpoint lag: only the journal was cut.
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [3, 3, 0])
        self.assertEqual(r.cmd("MGET", "k", "only3", "only4", "only5"),
                         [b"v3", b"x", None, None])
        # The next block must be above the target, even below the old tip.
        self.assertEqual(r.cmd("BLOCK.APPLY", 3, "k", "again"), err(
            "ERR block_id_not_increasing: block 3 is not above the applied "
            "height 3"))
        self.assertEqual(r.cmd("BLOCK.APPLY", 4, "k", "v4b"), 4)
        # Reverting to a height where no block was applied.
        self.assertEqual(r.cmd("BLOCK.APPLY", 10, "k", "v10"), 10)
        self.assertEqual(r.cmd("BLOCK.REVERT", 7), 7)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [7, 7, 7])
        self.assertEqual(r.cmd("GET", "k"), b"v4b")
        self.assertEqual(r.cmd("BLOCK.REVERT", 0), 0)
        self.assertEqual(r.cmd("MGET", "k", "only1"), [None, None])

    def test_heights_and_flush(self):
        r = self.r
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [0, 0, 0])
        self.assertEqual(r.cmd("BLOCK.FLUSH"), 0)
        for h in range(1, 4):
            self.assertEqual(r.cmd("BLOCK.APPLY", h, "k", "v"), h)
        self.assertEqual(r.cmd("BLOCK.FLUSH"), 3)
        # Durable; the newest blocks stay out of LevelDB (checkpoint lag).
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [3, 3, 0])
        self.assertEqual(r.cmd("BLOCK.HEIGHTS", "x"),
                         wrong_args("block.heights"))
        self.assertEqual(r.cmd("BLOCK.FLUSH", "x"), wrong_args("block.flush"))
        c = self.d.client()
        self.assertEqual(c.execute_command("BLOCK.HEIGHTS"), [3, 3, 0])

    def test_relaxed_and_strict(self):
        r = self.r
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k", "v1"), 1)
        self.assertEqual(r.cmd("BLOCK.RELAXED", 100), OK)
        self.assertEqual(self.info(r, "server")["durability"],
                         "sync-relaxed:100")
        for h in range(2, 5):
            self.assertEqual(r.cmd("BLOCK.APPLY", h, "k", "v%d" % h), h)
        # Written but not fsynced yet: the durable height stays behind.
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [4, 1])
        self.assertEqual(r.cmd("BLOCK.STRICT"), OK)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [4, 4])
        self.assertEqual(self.info(r, "server")["durability"], "sync")
        self.assertEqual(r.cmd("BLOCK.RELAXED", 0), err(
            "ERR invalid_argument: relaxed mode needs a sync interval of at "
            "least 1 block"))
        for bad in ("x", "-1", "4294967296", ""):
            self.assertEqual(r.cmd("BLOCK.RELAXED", bad), NOT_INTEGER, bad)
        self.assertEqual(r.cmd("BLOCK.RELAXED", 4294967295), OK)
        self.assertEqual(r.cmd("BLOCK.RELAXED"), wrong_args("block.relaxed"))
        self.assertEqual(r.cmd("BLOCK.RELAXED", 1, 2),
                         wrong_args("block.relaxed"))
        self.assertEqual(r.cmd("BLOCK.STRICT", 1), wrong_args("block.strict"))
        self.assertEqual(self.info(r, "server")["durability"],
                         "sync-relaxed:4294967295")
        self.assertEqual(r.cmd("BLOCK.RELAXED", 2), OK)
        # The mode is persisted: a restart without --durability keeps it.
        r.close()
        self.assertEqual(self.d.stop(), 0)
        d = self.start()
        self.assertEqual(self.info(d.raw(), "server")["durability"],
                         "sync-relaxed:2")

    def test_quit(self):
        self.r.send(encode("QUIT") + encode("PING"))
        self.assertEqual(self.r.read(), OK)
        self.assertTrue(self.r.wait_closed())
        self.assertEqual(self.r.unread(), b"")  # the PING got no answer
        # QUIT behind a write: the write's reply comes first, then +OK.
        r = self.d.raw()
        r.send(encode("BLOCK.APPLY", 1, "k", "v") + encode("QUIT") +
               encode("BLOCK.APPLY", 2, "k", "w"))
        self.assertEqual(r.read(), 1)
        self.assertEqual(r.read(), OK)
        self.assertTrue(r.wait_closed())
        self.assertEqual(r.unread(), b"")
        self.assertEqual(self.d.raw().cmd("BLOCK.HEIGHTS")[0], 1)
        c = self.d.client()
        self.assertIn(c.execute_command("QUIT"), (True, b"OK"))

    def test_unknown_commands(self):
        r = self.r
        self.assertEqual(r.cmd("FOO"), err(
            "ERR unknown command 'FOO', with args beginning with: "))
        self.assertEqual(r.cmd("SET", "a", "b"), err(
            "ERR unknown command 'SET', with args beginning with: 'a' 'b' "))
        self.assertEqual(r.cmd("BLOCK.NOPE", "1"), err(
            "ERR unknown command 'BLOCK.NOPE', with args beginning with: "
            "'1' "))
        # CR and LF in the name cannot end the error line early.
        self.assertEqual(r.cmd("a\r\nb"), err(
            "ERR unknown command 'a  b', with args beginning with: "))
        # Long arguments are cut at 128 bytes in all.
        self.assertEqual(r.cmd("X", "y" * 200), err(
            "ERR unknown command 'X', with args beginning with: '%s' "
            % ("y" * 128)))
        with self.assertRaises(redis.ResponseError) as ctx:
            self.d.client().execute_command("FLUSHALL")
        self.assertEqual(str(ctx.exception),
                         "unknown command 'FLUSHALL', with args beginning "
                         "with: ")
        self.assertEqual(r.cmd("PING"), PONG)

    def test_info_sections_and_figures(self):
        r = self.r
        version = run_daemon("--version")[1].split()[1]
        self.assertEqual(r.cmd("BLOCK.APPLY", 0, "k1", "v1", "k2", "v2"), 0)
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k1", ""), 1)
        self.assertEqual(r.cmd("GET", "k2"), b"v2")
        self.assertEqual(r.cmd("MGET", "k1", "k2", "k3"), [None, b"v2", None])
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k1", "x")[0], "-")
        self.assertEqual(r.cmd("BLOCK.FLUSH"), 1)
        bulk = r.cmd("INFO")
        sections = parse_info(bulk)
        self.assertEqual([s for s, _ in sections],
                         ["Server", "Heights", "Stats", "Health"])
        names = {s: [n for n, _ in f] for s, f in sections}
        self.assertEqual(names["Server"], [
            "rollblock_version", "process_id", "tcp_port",
            "uptime_in_seconds", "key_width", "durability"])
        self.assertEqual(names["Heights"], [
            "applied_height", "durable_height", "current_height"])
        latency = ["%s_latency_%s" % (k, f) for k in ("apply", "revert",
                                                     "lookup")
                   for f in ("count", "avg_us", "p50_us", "p95_us", "p99_us")]
        self.assertEqual(names["Stats"], [
            "connected_clients", "max_clients", "total_connections_received",
            "rejected_connections", "total_commands_processed",
            "protocol_errors", "blocks_applied", "operations_applied", "sets",
            "deletes", "reverts", "blocks_reverted", "lookups",
            "client_errors", "checksum_errors", "checkpoints", "live_keys",
            "state_table_bytes", "journal_bytes", "held_blocks",
            "held_bytes"] + latency)
        self.assertEqual(names["Health"], [
            "health", "health_reason", "mutation_restarts", "journal_restarts",
            "persistence_restarts", "health_restarts"])
        v = {n: x for _, f in sections for n, x in f}
        uptime = int(v.pop("uptime_in_seconds"))
        self.assertTrue(0 <= uptime < 60, uptime)
        checkpoints = int(v.pop("checkpoints"))
        self.assertTrue(0 <= checkpoints <= 2, checkpoints)
        self.assertGreater(int(v.pop("journal_bytes")), 0)
        self.assertGreater(int(v.pop("held_bytes")), 0)
        for k in ("apply", "revert", "lookup"):
            for f in ("avg_us", "p50_us", "p95_us", "p99_us"):
                x = v.pop("%s_latency_%s" % (k, f))
                self.assertRegex(x, r"^\d+\.\d$")
                if k == "revert":
                    self.assertEqual(x, "0.0")
        self.assertEqual(v, {
            "rollblock_version": version,
            "process_id": str(self.d.pid),
            "tcp_port": str(self.d.port),
            "key_width": "8",
            "durability": "sync",
            "applied_height": "1",
            "durable_height": "1",
            # Within the checkpoint lag: nothing is in LevelDB yet.
            "current_height": "0",
            "connected_clients": "1",
            "max_clients": "10000",
            "total_connections_received": "1",
            "rejected_connections": "0",
            "total_commands_processed": "7",
            "protocol_errors": "0",
            "blocks_applied": "2",
            "operations_applied": "3",
            "sets": "2",
            "deletes": "1",
            "reverts": "0",
            "blocks_reverted": "0",
            "lookups": "4",
            "client_errors": "1",
            "checksum_errors": "0",
            "live_keys": "1",
            # k1 (deleted, but tables never shrink) and k2 in two of the
            # 64 shards: a table of 16 slots of 23 bytes each.
            "state_table_bytes": "736",
            # Blocks 0 and 1, held for the checkpoint lag.
            "held_blocks": "2",
            "apply_latency_count": "2",
            "revert_latency_count": "0",
            "lookup_latency_count": "2",
            "health": "serving",
            "health_reason": "",
            "mutation_restarts": "0",
            "journal_restarts": "0",
            "persistence_restarts": "0",
            "health_restarts": "0",
        })
        # Sections by name, any case, in the fixed order.
        self.assertEqual(r.cmd("INFO", "heights"),
                         b"# Heights\r\napplied_height:1\r\ndurable_height:1"
                         b"\r\ncurrent_height:0\r\n")
        self.assertEqual(r.cmd("INFO", "HEALTH", "Heights"),
                         b"# Heights\r\napplied_height:1\r\ndurable_height:1"
                         b"\r\ncurrent_height:0\r\n\r\n# Health\r\n"
                         b"health:serving\r\nhealth_reason:\r\n"
                         b"mutation_restarts:0\r\njournal_restarts:0\r\n"
                         b"persistence_restarts:0\r\nhealth_restarts:0\r\n")
        self.assertEqual([s for s, _ in parse_info(r.cmd("INFO", "all"))],
                         ["Server", "Heights", "Stats", "Health"])
        self.assertEqual(r.cmd("INFO", "nosuchsection"), b"")
        stats = self.info(r, "stats")
        self.assertEqual(stats["total_commands_processed"], "12")
        # redis-py's own INFO parser reads the layout.
        parsed = self.d.client().info()
        self.assertEqual(parsed["applied_height"], 1)
        self.assertEqual(parsed["durability"], "sync")
        self.assertEqual(parsed["health"], "serving")
        self.assertEqual(self.d.client().info("heights"), {
            "applied_height": 1, "durable_height": 1, "current_height": 0})


class RevertHistoryTest(Base):
    def test_revert_below_the_pruned_journal_is_refused(self):
        # With a rollback window of 0 the journal drops whole 64 MiB segments
        # once they are checkpointed: ~600 blocks of 60 KB values (each entry
        # carries the value and its undo) fill the first one.
        d = self.start("--min-rollback-window", "0")
        c = d.client()
        journal = os.path.join(d.data_dir, "journal")
        value = lambda h: (b"%06d" % h) * 10000
        pipe = c.pipeline(transaction=False)
        height = 0
        deadline = time.monotonic() + 60
        while "000001.rbj" in os.listdir(journal):
            self.assertLess(time.monotonic(), deadline, os.listdir(journal))
            self.assertLess(height, 2000)
            for _ in range(50):
                height += 1
                pipe.execute_command("BLOCK.APPLY", height, "k", value(height))
            self.assertEqual(pipe.execute(), list(range(height - 49,
                                                        height + 1)))
        r = d.raw()
        reply = r.cmd("BLOCK.REVERT", 0)
        m = re.fullmatch(r"ERR rollback_beyond_history: cannot revert to "
                         r"block 0: the journal was pruned through block "
                         r"(\d+), so the oldest reachable height is (\d+)",
                         reply[1])
        self.assertIsNotNone(m, reply)
        floor = int(m.group(1))
        self.assertEqual(int(m.group(2)), floor)
        self.assertTrue(0 < floor < height, (floor, height))
        self.assertEqual(r.cmd("BLOCK.REVERT", floor - 1), err(
            "ERR rollback_beyond_history: cannot revert to block %d: the "
            "journal was pruned through block %d, so the oldest reachable "
            "height is %d" % (floor - 1, floor, floor)))
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[0], height)
        self.assertEqual(r.cmd("GET", "k"), value(height))
        self.assertEqual(r.cmd("BLOCK.REVERT", floor), floor)
        self.assertEqual(r.cmd("GET", "k"), value(floor))
        self.assertEqual(r.cmd("BLOCK.HEIGHTS"), [floor, floor, floor])


# -- AUTH ---------------------------------------------------------------------


class AuthTest(Base):
    def test_auth(self):
        pw = self.write("password", "s3cret pass\r\nsecond line ignored\n")
        d = self.start("--password-file", pw)
        r = d.raw()
        self.assertEqual(r.cmd("GET", "k"),
                         err("NOAUTH Authentication required."))
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k", "v"),
                         err("NOAUTH Authentication required."))
        self.assertEqual(r.cmd("NOSUCH"),
                         err("NOAUTH Authentication required."))
        self.assertEqual(r.cmd("PING"), PONG)
        wrongpass = err("WRONGPASS invalid username-password pair or user is "
                        "disabled.")
        self.assertEqual(r.cmd("AUTH", "s3cret"), wrongpass)
        self.assertEqual(r.cmd("AUTH", "s3cret pass\r"), wrongpass)
        self.assertEqual(r.cmd("AUTH", "other", "s3cret pass"), wrongpass)
        self.assertEqual(r.cmd("AUTH"), wrong_args("auth"))
        self.assertEqual(r.cmd("AUTH", "a", "b", "c"), wrong_args("auth"))
        self.assertEqual(r.cmd("GET", "k"),
                         err("NOAUTH Authentication required."))
        self.assertEqual(r.cmd("AUTH", "default", "s3cret pass"), OK)
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "k", "v"), 1)
        r2 = d.raw()
        self.assertEqual(r2.cmd("AUTH", "s3cret pass"), OK)
        self.assertEqual(r2.cmd("GET", "k"), b"v")
        # Before AUTH, big requests are refused like redis-server does.
        r3 = d.raw()
        r3.send(encode(*(["AUTH"] + ["x"] * 10)))
        self.assertEqual(r3.read(), err(
            "ERR Protocol error: unauthenticated multibulk length"))
        self.assertTrue(r3.wait_closed())
        r4 = d.raw()
        r4.send(encode("AUTH", "x" * 16385))
        self.assertEqual(r4.read(), err(
            "ERR Protocol error: unauthenticated bulk length"))
        self.assertTrue(r4.wait_closed())
        r5 = d.raw()
        self.assertEqual(r5.cmd("QUIT"), OK)
        self.assertTrue(r5.wait_closed())
        # Real clients.
        with self.assertRaises(redis.AuthenticationError) as ctx:
            d.client().get("k")
        self.assertEqual(str(ctx.exception), "Authentication required.")
        with self.assertRaises(redis.ResponseError) as ctx:
            d.client(password="nope").get("k")
        self.assertEqual(str(ctx.exception), "WRONGPASS invalid "
                         "username-password pair or user is disabled.")
        self.assertEqual(d.client(password="s3cret pass").get("k"), b"v")
        self.assertEqual(d.client(username="default",
                                  password="s3cret pass").get("k"), b"v")
        env = dict(os.environ, REDISCLI_AUTH="s3cret pass")
        out = subprocess.run(["redis-cli", "-h", HOST, "-p", str(d.port),
                              "--no-raw", "GET", "k"], capture_output=True,
                             env=env, timeout=20)
        self.assertEqual(out.stdout, b'"v"\n')
        self.assertEqual(r.cmd("INFO", "stats").count(b"protocol_errors:2"), 1)

    def test_auth_without_a_password(self):
        d = self.start()
        self.assertEqual(d.raw().cmd("AUTH", "x"), err(
            "ERR AUTH <password> called without any password configured for "
            "the default user. Are you sure your configuration is correct?"))


# -- framing, pipelining, many clients ------------------------------------------


class ConnectionTest(Base):
    def setUp(self):
        super().setUp()
        self.d = self.start()

    def assert_serving(self):
        r = self.d.raw()
        self.assertEqual(r.cmd("PING"), PONG)
        r.close()

    def wait_clients(self, raw, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            got = int(self.info(raw, "stats")["connected_clients"])
            if got == n or time.monotonic() > deadline:
                self.assertEqual(got, n)
                return
            time.sleep(0.02)

    def test_protocol_errors_close_only_that_connection(self):
        keep = self.d.raw()
        self.assertEqual(keep.cmd("BLOCK.APPLY", 1, "k", "v"), 1)
        cases = [
            (b"*abc\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*2\r\n$3\r\nGET\r\n:1\r\n",
             "ERR Protocol error: expected '$', got ':'"),
            (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
            (b"*1\r\n$4\r\nPINGxx\r\n", "ERR Protocol error: bulk string of "
             "4 bytes not followed by CRLF"),
            (b"*1\r\x00", "ERR Protocol error: expected '\\n' after '\\r', "
             "got '\\x00'"),
            (b"GET \"unbalanced\r\n",
             "ERR Protocol error: unbalanced quotes in request"),
            (b"*1\r\n$99999999999\r\n",
             "ERR Protocol error: invalid bulk length"),
            (b"*3000000\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"x" * 70000, "ERR Protocol error: too big inline request"),
        ]
        for i, (data, text) in enumerate(cases):
            r = self.d.raw()
            # A good command first: it is answered before the error, even a
            # write the store answers later.
            r.send(encode("BLOCK.APPLY", 10 + i, "k%d" % i, "v") + data)
            self.assertEqual(r.read(), 10 + i)
            self.assertEqual(r.read(), err(text), data[:40])
            self.assertTrue(r.wait_closed(), data[:40])
            self.assertEqual(r.unread(), b"")
            self.assertEqual(keep.cmd("GET", "k"), b"v")
        stats = self.info(keep, "stats")
        self.assertEqual(stats["protocol_errors"], str(len(cases)))
        self.assertEqual(keep.cmd("BLOCK.HEIGHTS")[0], 9 + len(cases))
        self.wait_clients(keep, 1)

    def test_garbage_bytes(self):
        keep = self.d.raw()
        self.assertEqual(keep.cmd("BLOCK.APPLY", 1, "k", "v"), 1)
        rng = random.Random(7)
        for i in range(30):
            r = self.d.raw()
            garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(
                1, 4000)))
            if i % 3 == 0:
                garbage = b"*" + garbage
            try:
                r.send(garbage)
                r.sock.shutdown(socket.SHUT_WR)
                # Whatever comes back is well-formed RESP, ending in EOF.
                while True:
                    reply = r.read()
                    self.assertNotIsInstance(reply, list)
            except (EOFError, ConnectionResetError):
                pass
            r.close()
            self.assertEqual(keep.cmd("GET", "k"), b"v")
        self.assertEqual(keep.cmd("BLOCK.HEIGHTS")[:2], [1, 1])
        self.wait_clients(keep, 1)
        self.assert_serving()

    def test_client_vanishing_mid_frame(self):
        keep = self.d.raw()
        self.assertEqual(keep.cmd("BLOCK.APPLY", 1, "k", "v"), 1)
        frame = encode("BLOCK.APPLY", 2, "k", "x" * 60000)
        for cut in (1, 5, 20, 30, len(frame) // 2, len(frame) - 1):
            r = self.d.raw()
            r.send(frame[:cut])
            r.close()
        # One that vanishes with 2,000 writes in flight and unread replies.
        r = self.d.raw()
        r.send(b"".join(encode("BLOCK.APPLY", h, "w", "%d" % h)
                        for h in range(10, 2010)) + frame[:100])
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b"\x01\x00\x00\x00\x00\x00\x00\x00")
        r.close()  # a reset, not a FIN
        self.wait_clients(keep, 1)
        # Every request of the gone client has reached the store by now:
        # the flush waits for them.
        applied = keep.cmd("BLOCK.FLUSH")
        heights = keep.cmd("BLOCK.HEIGHTS")
        self.assertEqual(heights[:2], [applied] * 2)
        self.assertLessEqual(heights[2], applied)
        # Nothing of the cut frames landed; the writes in flight landed in
        # order, each whole.
        self.assertTrue(applied == 1 or 10 <= applied < 2010, applied)
        self.assertEqual(keep.cmd("GET", "k"), b"v")
        self.assertEqual(keep.cmd("GET", "w"),
                         None if applied == 1 else b"%d" % applied)
        self.assertEqual(keep.cmd("BLOCK.APPLY", 3000, "k", "after"), 3000)
        self.assertEqual(keep.cmd("GET", "k"), b"after")

    def test_slow_reader_gets_every_reply(self):
        # 1,500 reads of a 60 KB value make 90 MB of replies, far above the
        # output limit: the server stops reading the client until it drains,
        # then goes on; nothing is lost or reordered.
        r = self.d.raw()
        big = b"%05d" % 1 * 12000
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "big", big), 1)
        n = 1500
        sender = threading.Thread(target=r.send, args=(b"".join(
            encode("GET", "big") if i % 100 else encode("BLOCK.APPLY", 2 + i,
                                                        "n", "%d" % i)
            for i in range(n)),), daemon=True)
        sender.start()
        time.sleep(0.5)
        keep = self.d.raw()
        self.assertEqual(keep.cmd("GET", "big"), big)  # others are served
        for i in range(n):
            self.assertEqual(r.read(), big if i % 100 else 2 + i, i)
        sender.join(timeout=30)
        self.assertFalse(sender.is_alive())
        self.assertEqual(r.cmd("GET", "n"), b"1400")

    def test_pipelining_10000_commands(self):
        c = self.d.client()
        pipe = c.pipeline(transaction=False)
        expected = []
        for h in range(5000):
            k = "p%d" % (h % 100)
            pipe.execute_command("BLOCK.APPLY", h, k, "v%d" % h)
            expected.append(h)
            pipe.get(k)
            expected.append(b"v%d" % h)
        self.assertEqual(len(expected), 10000)
        self.assertEqual(pipe.execute(), expected)
        # Reads, writes and errors mixed on one raw socket, sent at once.
        r = self.d.raw()
        data, expected = [], []
        for i in range(10000):
            h = 5000 + i // 4
            step = i % 4
            if step == 0:
                data.append(encode("BLOCK.APPLY", h, "p0", "w%d" % h))
                expected.append(h)
            elif step == 1:
                data.append(encode("MGET", "p0", "p1"))
                expected.append([b"w%d" % h, b"v4901"])
            elif step == 2:
                data.append(encode("BLOCK.APPLY", h, "p0", "z"))
                expected.append(err(
                    "ERR block_id_not_increasing: block %d is not above the "
                    "applied height %d" % (h, h)))
            else:
                data.append(encode("BLOCK.HEIGHTS"))
                expected.append([h, h, None])
        r.send(b"".join(data))
        for i, want in enumerate(expected):
            got = r.read()
            if isinstance(want, list) and want[-1:] == [None]:
                got = got[:2] + [None]
            self.assertEqual(got, want, i)
        self.assertEqual(c.get("p0"), b"w7499")

    def test_50_concurrent_clients(self):
        n, rounds = 50, 10
        keep = self.d.raw()
        self.assertEqual(keep.cmd("BLOCK.APPLY", 0), 0)
        lock = threading.Lock()
        next_height = [1]
        connected = threading.Barrier(n + 1, timeout=60)
        counted = threading.Barrier(n + 1, timeout=60)
        errors = []

        def worker(i):
            try:
                c = self.d.client()
                own = "c%02d" % i
                c.ping()
                connected.wait()
                counted.wait()
                for j in range(rounds):
                    with lock:
                        h = next_height[0]
                        next_height[0] += 1
                        got = c.execute_command("BLOCK.APPLY", h, own,
                                                "%d-%d" % (i, j))
                    if got != h:
                        errors.append((i, j, got))
                    if c.get(own) != b"%d-%d" % (i, j):
                        errors.append((i, j, "read"))
                    others = ["c%02d" % ((i + k) % n) for k in range(5)]
                    vals = c.mget(others)
                    if vals[0] != b"%d-%d" % (i, j) or len(vals) != 5:
                        errors.append((i, j, vals))
                pipe = c.pipeline(transaction=False)
                for _ in range(200):
                    pipe.get(own)
                if pipe.execute() != [b"%d-%d" % (i, rounds - 1)] * 200:
                    errors.append((i, "pipeline"))
                c.close()
            except Exception as e:  # reported below
                errors.append((i, repr(e)))
                connected.abort()
                counted.abort()

        threads = [threading.Thread(target=worker, args=(i,))
                   for i in range(n)]
        for t in threads:
            t.start()
        try:
            connected.wait()
            stats = self.info(keep, "stats")
            self.assertEqual(stats["connected_clients"], str(n + 1))
            self.assertEqual(stats["total_connections_received"], str(n + 1))
            counted.wait()
        except threading.BrokenBarrierError:
            for t in threads:
                t.join(timeout=60)
            self.fail("a client failed: %r" % errors)
        for t in threads:
            t.join(timeout=120)
            self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        total = n * rounds
        self.assertEqual(keep.cmd("BLOCK.HEIGHTS")[:2], [total, total])
        self.assertEqual(keep.cmd("MGET", *["c%02d" % i for i in range(n)]),
                         [b"%d-%d" % (i, rounds - 1) for i in range(n)])
        stats = self.info(keep, "stats")
        self.assertEqual(stats["blocks_applied"], str(total + 1))
        self.assertEqual(stats["rejected_connections"], "0")
        self.wait_clients(keep, 1)

    def test_max_clients(self):
        d = self.start("--max-clients", "3", data="other")
        conns = [d.raw() for _ in range(3)]
        for r in conns:
            self.assertEqual(r.cmd("PING"), PONG)
        for _ in range(2):
            extra = d.raw()
            self.assertEqual(extra.read(),
                             err("ERR max number of clients reached"))
            self.assertTrue(extra.wait_closed())
        conns.pop().close()
        # The slot frees once the server has seen the close.
        rejected = 2
        deadline = time.monotonic() + 10
        while True:
            r = d.raw()
            reply = r.cmd("PING")
            if reply == PONG:
                break
            self.assertEqual(reply, err("ERR max number of clients reached"))
            rejected += 1
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        stats = self.info(r, "stats")
        self.assertEqual(stats["max_clients"], "3")
        self.assertEqual(stats["connected_clients"], "3")
        self.assertEqual(stats["rejected_connections"], str(rejected))
        self.assertEqual(stats["total_connections_received"], "4")
        # What redis-py makes of it. Its pool checks for unread data right
        # after connecting: when the server's error has arrived by then, it
        # reconnects once and says "Connection not ready" instead (the exact
        # server text is checked on raw sockets above).
        with self.assertRaises(redis.ConnectionError) as ctx:
            d.client().ping()
        self.assertIn(str(ctx.exception), ("max number of clients reached",
                                           "Connection not ready"))

    def test_redis_cli(self):
        def cli(*args):
            p = subprocess.run(["redis-cli", "-h", HOST, "-p",
                                str(self.d.port), "--no-raw"] + list(args),
                               capture_output=True, timeout=20)
            return p.stdout.decode()
        self.assertEqual(cli("PING"), "PONG\n")
        self.assertEqual(cli("BLOCK.APPLY", "4", "a", "1", "b", "2"),
                         "(integer) 4\n")
        self.assertEqual(cli("GET", "a"), '"1"\n')
        self.assertEqual(cli("GET", "zz"), "(nil)\n")
        self.assertEqual(cli("MGET", "a", "zz", "b"),
                         '1) "1"\n2) (nil)\n3) "2"\n')
        self.assertEqual(cli("BLOCK.HEIGHTS").splitlines()[:2],
                         ["1) (integer) 4", "2) (integer) 4"])
        self.assertEqual(cli("BLOCK.APPLY", "4", "a", "1"),
                         "(error) ERR block_id_not_increasing: block 4 is not "
                         "above the applied height 4\n")
        self.assertEqual(cli("BLOCK.POP", "5", "a"), '"1"\n')
        self.assertEqual(cli("BLOCK.REVERT", "4"), "(integer) 4\n")
        self.assertEqual(cli("BLOCK.FLUSH"), "(integer) 4\n")
        self.assertEqual(cli("BLOCK.RELAXED", "3"), "OK\n")
        self.assertEqual(cli("BLOCK.STRICT"), "OK\n")
        self.assertIn("applied_height:4", cli("INFO", "heights"))
        self.assertEqual(cli("HELLO"), "(error) ERR unknown command 'HELLO', "
                         "with args beginning with: \n")
        self.assertEqual(cli("QUIT"), "OK\n")


# -- durability: SIGKILL, SIGTERM --------------------------------------------------

CRASH_KEYS = 64


def crash_ops(h):
    """The operations of block h in the crash workload: (key, value) pairs,
    value b"" deleting; ('pop', key) for a BLOCK.POP block."""
    if h % 11 == 5:
        return ("pop", b"ck%03d" % ((h * 5) % CRASH_KEYS))
    ops = [(b"ck%03d" % (h % CRASH_KEYS), b"v%d" % h),
           (b"ck%03d" % ((h * 7 + 3) % CRASH_KEYS), b"w%d" % h * (1 + h % 5))]
    if h % 3 == 0:
        ops.append((b"ck%03d" % ((h * 13 + 1) % CRASH_KEYS), b""))
    return ops


def crash_command(h):
    ops = crash_ops(h)
    if ops[0] == "pop":
        return encode("BLOCK.POP", h, ops[1])
    args = ["BLOCK.APPLY", h]
    for k, v in ops:
        args += [k, v]
    return encode(*args)


class CrashModel:
    """The expected state after each height of the crash workload."""

    def __init__(self):
        self.state = {}
        self.height = -1
        self.states = {}

    def at(self, h):
        while self.height < h:
            self.height += 1
            ops = crash_ops(self.height)
            if ops[0] == "pop":
                self.state.pop(ops[1], None)
            else:
                for k, v in ops:
                    if v:
                        self.state[k] = v
                    else:
                        self.state.pop(k, None)
            self.states[self.height] = dict(self.state)
        return self.states[h]

    def expected_mget(self, h):
        s = self.at(h)
        return [s.get(b"ck%03d" % i) for i in range(CRASH_KEYS)]


class Writer(threading.Thread):
    """Applies the crash workload from `start` over a raw socket, keeping up
    to `window` blocks in flight; records the last acknowledged height."""

    def __init__(self, port, start, window):
        super().__init__(daemon=True)
        self.raw = Raw(port)
        self.next = start
        self.acked = start - 1
        self.window = window
        self.error = None
        self.stop = False

    @property
    def last_sent(self):
        return self.next - 1

    def run(self):
        try:
            while not self.stop:
                while self.next - 1 - self.acked < self.window:
                    self.raw.send(crash_command(self.next))
                    self.next += 1
                reply = self.raw.read()
                want = self.acked + 1
                ops = crash_ops(want)
                if ops[0] == "pop":
                    if not (reply is None or isinstance(reply, bytes)):
                        raise AssertionError("pop %d: %r" % (want, reply))
                elif reply != want:
                    raise AssertionError("apply %d: %r" % (want, reply))
                self.acked = want
        except (EOFError, ConnectionResetError, BrokenPipeError, OSError):
            pass  # the daemon was killed
        except AssertionError as e:
            self.error = e


class DurabilityTest(Base):
    def check_state(self, raw, model, h):
        keys = [b"ck%03d" % i for i in range(CRASH_KEYS)]
        self.assertEqual(raw.cmd("MGET", *keys), model.expected_mget(h),
                         "state at height %d" % h)

    def test_sigkill_restart_rounds_keep_every_acknowledged_block(self):
        model = CrashModel()
        rng = random.Random(42)
        acked = -1       # every block up to here was acknowledged
        last_sent = -1   # no block above this was sent
        applied = -1
        rounds = 12
        beyond_ack = 0   # rounds that recovered unacknowledged blocks
        in_flight = 0    # unacknowledged blocks at the kills
        for rnd in range(rounds):
            d = self.start()  # sync: the default mode
            raw = d.raw()
            heights = raw.cmd("BLOCK.HEIGHTS")
            if rnd > 0:
                self.assertGreaterEqual(heights[0], acked,
                                        "round %d lost acknowledged blocks"
                                        % rnd)
                self.assertLessEqual(heights[0], last_sent)
                self.assertEqual(heights[1], heights[0])
                self.assertLessEqual(heights[2], heights[0])
                self.check_state(raw, model, heights[0])
                applied = heights[0]
                beyond_ack += applied > acked
            writer = Writer(d.port, applied + 1, 1 if rnd % 2 else 48)
            writer.start()
            deadline = time.monotonic() + 20
            target = applied + 5 + rng.randrange(60)
            while writer.acked < target:
                self.assertLess(time.monotonic(), deadline)
                self.assertTrue(writer.is_alive(), writer.error)
                time.sleep(0.002)
            time.sleep(rng.random() * 0.05)
            d.proc.kill()
            d.wait()
            writer.join(timeout=20)
            self.assertFalse(writer.is_alive())
            self.assertIsNone(writer.error)
            acked, last_sent = writer.acked, writer.last_sent
            in_flight += last_sent - acked
            writer.raw.close()
            raw.close()
        d = self.start()
        raw = d.raw()
        h = raw.cmd("BLOCK.HEIGHTS")[0]
        self.assertTrue(acked <= h <= last_sent, (acked, h, last_sent))
        self.check_state(raw, model, h)
        beyond_ack += h > acked
        self.assertGreater(h, rounds * 5)
        sys.stderr.write("[%d SIGKILL rounds: %d blocks, %d unacknowledged "
                         "at the kills, %d rounds recovered some of them] "
                         % (rounds, h + 1, in_flight, beyond_ack))

    def test_sigterm_flushes_and_exits_0(self):
        for mode in ("sync", "async:1024", "async-relaxed:64:1000"):
            data = "data-" + mode.replace(":", "-")
            d = self.start("--durability", mode, data=data)
            c = d.client()
            pipe = c.pipeline(transaction=False)
            for h in range(1500):
                pipe.execute_command("BLOCK.APPLY", h, "t%d" % (h % 40),
                                     "%s-%d" % (mode, h))
            self.assertEqual(pipe.execute(), list(range(1500)))
            idle = d.raw()  # an idle client does not hold the exit up
            self.assertEqual(d.stop(), 0, d.text())
            self.assertIn("received SIGTERM: closing clients, flushing and "
                          "checkpointing", d.text())
            self.assertIn("stopped at block 1499 (all durable and "
                          "checkpointed)", d.text())
            self.assertTrue(idle.wait_closed())
            d2 = self.start(data=data)
            raw = d2.raw()
            self.assertEqual(raw.cmd("BLOCK.HEIGHTS"), [1499, 1499, 1499])
            last = [max(h for h in range(1500) if h % 40 == i)
                    for i in range(40)]
            self.assertEqual(raw.cmd("MGET", *["t%d" % i for i in range(40)]),
                             [b"%s-%d" % (mode.encode(), h) for h in last])
            self.assertEqual(self.info(raw, "server")["durability"], mode)
            d2.signal(signal.SIGINT)
            self.assertEqual(d2.wait(), 0)
            self.assertIn("received SIGINT", d2.text())

    def test_sigterm_under_load_keeps_every_applied_block(self):
        model = CrashModel()
        d = self.start("--durability", "async:64")
        writer = Writer(d.port, 0, 48)
        writer.start()
        deadline = time.monotonic() + 20
        while writer.acked < 300:
            self.assertLess(time.monotonic(), deadline)
            self.assertTrue(writer.is_alive(), writer.error)
            time.sleep(0.002)
        self.assertEqual(d.stop(), 0, d.text())
        writer.join(timeout=20)
        self.assertFalse(writer.is_alive())
        self.assertIsNone(writer.error)
        m = re.search(r"stopped at block (\d+) \(all durable and "
                      r"checkpointed\)\n", d.text())
        self.assertIsNotNone(m, d.text())
        stopped = int(m.group(1))
        self.assertTrue(writer.acked <= stopped <= writer.last_sent,
                        (writer.acked, stopped, writer.last_sent))
        d2 = self.start()
        raw = d2.raw()
        self.assertEqual(raw.cmd("BLOCK.HEIGHTS"), [stopped] * 3)
        self.check_state(raw, model, stopped)

    def test_second_daemon_on_the_same_directory_fails_at_once(self):
        d = self.start()
        self.assertEqual(d.raw().cmd("BLOCK.APPLY", 1, "k", "v"), 1)
        start = time.monotonic()
        second = self.start(wait=False)
        self.assertEqual(second.wait(timeout=10), 1)
        self.assertLess(time.monotonic() - start, 10)
        self.assertIn(
            "[critical] cannot open the store: data_dir_locked: data directory "
            "%s is locked by another process (pid %d); stop that process or "
            "use another directory\n" % (d.data_dir, d.pid), second.text())
        self.assertNotIn("serving RESP", second.text())
        self.assertEqual(d.raw().cmd("GET", "k"), b"v")
        self.assertEqual(d.stop(), 0)
        self.assertEqual(self.start().raw().cmd("GET", "k"), b"v")


# -- flags and config file ----------------------------------------------------


class FlagTest(Base):
    def assert_usage_error(self, args, message):
        rc, out, errout = run_daemon(*args)
        self.assertEqual((rc, out, errout),
                         (2, "", "rollblockd: %s (see rollblockd --help)\n"
                          % message), args)
        # Nothing happened: no data directory was created.
        self.assertFalse(os.path.exists(self.path("never")))

    def test_help_and_version(self):
        rc, out, errout = run_daemon("--help")
        self.assertEqual((rc, errout), (0, ""))
        self.assertTrue(out.startswith("usage: rollblockd [options]\n\n"
                                       "rollblockd options:\n"), out)
        for flag in ("--help", "--version", "--config", "--data-dir",
                     "--bind", "--port", "--caf-port", "--metrics-port",
                     "--key-bytes", "--page-keys", "--durability",
                     "--min-rollback-window",
                     "--password-file", "--max-clients", "--log-level"):
            self.assertRegex(out, r"(?m)^  (-h \[ )?%s " % re.escape(flag))
        self.assertEqual(run_daemon("-h"), (0, out, ""))
        rc, out, errout = run_daemon("--version")
        self.assertEqual((rc, errout), (0, ""))
        self.assertRegex(out, r"^rollblockd \d+\.\d+\.\d+\n$")
        self.assertEqual(os.listdir(self.tmp), [])

    def test_bad_flag_values(self):
        never = self.path("never")
        pw_empty = self.write("empty", "\n")
        missing = self.path("no-such-file")
        num = "invalid value '%s' (expected a whole number from %d to %d)"
        u64 = 18446744073709551615
        cases = [
            (["--bogus"], "unrecognised option '--bogus'"),
            (["--port"], "the required argument for option '--port' is "
                         "missing"),
            (["--port", "1", "--port", "2"],
             "option '--port' cannot be specified more than once"),
            (["--data-dir", ""],
             "--data-dir: the data directory must not be empty"),
            (["--port", "abc"], "--port: " + num % ("abc", 0, 65535)),
            (["--port", "65536"], "--port: " + num % ("65536", 0, 65535)),
            (["--port", "-1"], "--port: " + num % ("-1", 0, 65535)),
            (["--port", "80x"], "--port: " + num % ("80x", 0, 65535)),
            (["--port", ""], "--port: " + num % ("", 0, 65535)),
            (["--caf-port", "70000"],
             "--caf-port: " + num % ("70000", 0, 65535)),
            (["--metrics-port", "x"],
             "--metrics-port: " + num % ("x", 0, 65535)),
            (["--key-bytes", "7"], "--key-bytes: " + num % ("7", 8, 64)),
            (["--key-bytes", "65"], "--key-bytes: " + num % ("65", 8, 64)),
            (["--page-keys", "0"], "--page-keys: " + num % ("0", 1, 64)),
            (["--page-keys", "3"], "--page-keys: invalid value '3' "
                                   "(expected a power of two from 1 to 64)"),
            (["--min-rollback-window", "-1"],
             "--min-rollback-window: " + num % ("-1", 0, u64)),
            (["--min-rollback-window", "18446744073709551616"],
             "--min-rollback-window: " + num % ("18446744073709551616", 0,
                                                u64)),
            (["--max-clients", "0"], "--max-clients: " + num % ("0", 1,
                                                                1000000)),
            (["--max-clients", "1000001"],
             "--max-clients: " + num % ("1000001", 1, 1000000)),
            (["--log-level", "loud"], "--log-level: unknown level 'loud' "
             "(trace, debug, info, warn, error, critical, off)"),
            (["--password-file", missing],
             "--password-file: cannot read " + missing),
            (["--password-file", pw_empty],
             "--password-file: %s holds an empty password" % pw_empty),
            (["--bind", "0.0.0.0"], "--bind: refusing to listen on 0.0.0.0 "
             "without --password-file (only loopback addresses may go "
             "without a password)"),
            (["--bind", "192.168.1.1"], "--bind: refusing to listen on "
             "192.168.1.1 without --password-file (only loopback addresses "
             "may go without a password)"),
            (["--bind", ""], "--bind: refusing to listen on  without "
             "--password-file (only loopback addresses may go without a "
             "password)"),
            (["--config", missing], "cannot read config file " + missing),
        ]
        durability = "--durability: invalid durability mode '%s': %s " \
            "(expected sync, sync-relaxed:N, async:P or async-relaxed:P:N " \
            "with N, P >= 1)"
        for text, why in [("fast", "unknown mode"),
                          ("sync:1", "sync takes no count"),
                          ("sync-relaxed", "sync-relaxed needs one positive "
                                           "count"),
                          ("sync-relaxed:0", "sync-relaxed needs one "
                                             "positive count"),
                          ("async", "async needs one positive count"),
                          ("async:x", "async needs one positive count"),
                          ("async-relaxed:1", "async-relaxed needs two "
                                              "positive counts"),
                          ("async-relaxed:1:0", "async-relaxed needs two "
                                                "positive counts")]:
            cases.append((["--durability", text], durability % (text, why)))
        for args, message in cases:
            self.assert_usage_error(["--data-dir", never] + args
                                    if "--data-dir" not in args else args,
                                    message)

    def test_non_loopback_bind_needs_a_password_file(self):
        rc, out, errout = run_daemon("--data-dir", self.path("never"),
                                     "--bind", "0.0.0.0", "--port", "0")
        self.assertEqual(rc, 2)
        self.assertIn("refusing to listen on 0.0.0.0 without "
                      "--password-file", errout)
        # Any loopback address needs none.
        d = self.start("--bind", "127.0.0.2")
        self.assertEqual(d.bound, "127.0.0.2")
        r = Raw(d.port, host="127.0.0.2")
        self.assertEqual(r.cmd("PING"), PONG)
        with self.assertRaises(OSError):
            socket.create_connection((HOST, d.port), timeout=5).close()

    def test_config_file(self):
        pw = self.write("pw", "from-config\n")
        data = self.path("cfg-data")
        conf = self.write("rollblockd.conf", "\n".join([
            "# rollblockd test configuration",
            "data-dir = %s" % data,
            "port = 1",            # the command line's --port 0 wins
            "key-bytes = 16",
            "durability = sync-relaxed:7",
            "min-rollback-window = 5",
            "password-file = %s" % pw,
            "max-clients = 42",
            "log-level = info",
            "metrics-port = 0",
            ""]))
        d = Daemon(None, "--config", conf, "--port", "0", port_flag=False,
                   log_path=self.path("cfg.log"), wait=False)
        d.flags.append("--metrics-port")
        d.wait_ready()
        self.assertEqual(http_get(d.metrics_port, "/health")[0], 200)
        c = d.client(password="from-config")
        info = c.info()
        self.assertEqual(info["key_width"], 16)
        self.assertEqual(info["durability"], "sync-relaxed:7")
        self.assertEqual(info["max_clients"], 42)
        self.assertEqual(info["tcp_port"], d.port)
        self.assertNotEqual(d.port, 1)
        k = b"sixteen-byte-key"
        self.assertEqual(c.execute_command("BLOCK.APPLY", 1, k, "v"), 1)
        with self.assertRaises(redis.ResponseError) as ctx:
            c.execute_command("BLOCK.APPLY", 2, k + b"x", "v")
        self.assertEqual(str(ctx.exception),
                         "key_width_mismatch: operation 0 of block 2 has a "
                         "17-byte key; this store's keys are 16 bytes")
        self.assertTrue(os.path.isdir(os.path.join(data, "journal")))
        self.assertEqual(d.stop(), 0)
        # The flag wins over the file: the same data directory with another
        # key width is refused (exit 1, naming the directory).
        d2 = Daemon(None, "--config", conf, "--port", "0", "--key-bytes", "8",
                    port_flag=False, wait=False,
                    log_path=self.path("cfg2.log"))
        self.assertEqual(d2.wait(timeout=20), 1)
        self.assertIn("cannot open the store: config_mismatch: data directory "
                      "%s holds 16-byte keys, but the options ask for 8-byte "
                      "keys; the key width is fixed at creation" % data,
                      d2.text())
        # --log-level from the command line wins too: warn hides the info log.
        port = free_port()
        d3 = Daemon(None, "--config", conf, "--port", str(port),
                    "--log-level", "warn", port_flag=False, wait=False,
                    log_path=self.path("cfg3.log"))
        deadline = time.monotonic() + 20
        while True:
            try:
                r = Raw(port)
                break
            except OSError:
                self.assertIsNone(d3.proc.poll(), d3.text())
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.02)
        self.assertEqual(r.cmd("AUTH", "from-config"), OK)
        self.assertEqual(r.cmd("GET", k), b"v")
        self.assertEqual(d3.stop(), 0)
        self.assertNotIn("[info]", d3.text())

    def test_shipped_sample_config(self):
        sample = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "..", "deploy", "rollblockd.conf")
        with open(sample) as f:
            text = f.read()
        # Every example in it, uncommented, parses (but the password file,
        # which does not exist here); ports and the directory come from flags.
        lines = []
        for line in text.splitlines():
            m = re.fullmatch(r"# ?([a-z-]+ = \S+)", line)
            if m and not m.group(1).startswith("password-file"):
                line = m.group(1)
            lines.append(line)
        self.assertIn("durability = sync", lines)
        conf = self.write("sample.conf", "\n".join(lines) + "\n")
        for path in (sample, conf):
            d = Daemon(self.path("data"), "--config", path, "--caf-port", "0",
                       "--metrics-port", "0")
            info = self.info(d.raw(), "server")
            self.assertEqual((info["key_width"], info["durability"]),
                             ("8", "sync"))
            self.assertEqual(http_get(d.metrics_port, "/health")[0], 200)
            self.assertEqual(d.stop(), 0)

    def test_bad_config_files(self):
        never = self.path("never")
        cases = [
            ("port\n", "config file %s: the options configuration file "
                       "contains an invalid line 'port'"),
            ("bogus = 1\n", "config file %s: unrecognised option 'bogus'"),
            ("port = abc\n", "--port: invalid value 'abc' (expected a whole "
                             "number from 0 to 65535)"),
            ("key-bytes = 100\n", "--key-bytes: invalid value '100' "
                                  "(expected a whole number from 8 to 64)"),
            ("durability = sometimes\n", "--durability: invalid durability "
             "mode 'sometimes': unknown mode (expected sync, sync-relaxed:N, "
             "async:P or async-relaxed:P:N with N, P >= 1)"),
            ("log-level = chatty\n", "--log-level: unknown level 'chatty' "
             "(trace, debug, info, warn, error, critical, off)"),
            ("bind = 10.0.0.1\n", "--bind: refusing to listen on 10.0.0.1 "
             "without --password-file (only loopback addresses may go "
             "without a password)"),
            ("password-file = %s\n" % self.path("missing"),
             "--password-file: cannot read " + self.path("missing")),
        ]
        for i, (text, message) in enumerate(cases):
            conf = self.write("bad%d.conf" % i, text)
            rc, out, errout = run_daemon("--data-dir", never, "--config", conf)
            want = message % conf if "%s" in message else message
            self.assertEqual((rc, out, errout),
                             (2, "", "rollblockd: %s (see rollblockd --help)\n"
                              % want), text)
        self.assertFalse(os.path.exists(never))

    def test_ports_in_use(self):
        with socket.socket() as busy:
            busy.bind((HOST, 0))
            busy.listen()
            port = busy.getsockname()[1]
            for flag, pattern in [
                    ("--port", r"\[critical\] cannot serve RESP on "
                               r"127\.0\.0\.1:%d: " % port),
                    ("--caf-port", r"\[critical\] cannot publish the store to "
                                   r"CAF clients on 127\.0\.0\.1:%d: " % port),
                    ("--metrics-port", r"\[critical\] io_error: cannot listen "
                                       r"for /metrics on 127\.0\.0\.1:%d\n"
                                       % port)]:
                args = [flag, str(port)]
                if flag != "--port":
                    args += ["--port", "0"]
                d = Daemon(self.path("data"), *args, port_flag=False,
                           wait=False)
                self.assertEqual(d.wait(timeout=30), 1, d.text())
                self.assertRegex(d.text(), pattern)
        # The store was closed properly each time: the directory is free.
        d = self.start()
        self.assertEqual(d.raw().cmd("BLOCK.HEIGHTS"), [0, 0, 0])


# -- /metrics and /health -------------------------------------------------------


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (HOST, port, path),
                                    timeout=IO_TIMEOUT) as resp:
            return resp.status, resp.headers.get("Content-Type"), \
                resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


class MetricsTest(Base):
    def test_metrics_and_health(self):
        d = self.start("--metrics-port", "0")
        r = d.raw()
        self.assertEqual(r.cmd("BLOCK.APPLY", 0, "a", "1", "b", "2", "c", "3"),
                         0)
        self.assertEqual(r.cmd("BLOCK.APPLY", 1, "a", "", "b", "22"), 1)
        self.assertEqual(r.cmd("BLOCK.APPLY", 2, "d", "4"), 2)
        self.assertEqual(r.cmd("BLOCK.POP", 3, "c"), b"3")
        self.assertEqual(r.cmd("BLOCK.APPLY", 3, "x", "y")[0], "-")
        self.assertEqual(r.cmd("GET", "123456789")[0], "-")
        self.assertEqual(r.cmd("GET", "b"), b"22")
        self.assertEqual(r.cmd("GET", "zz"), None)
        self.assertEqual(r.cmd("MGET", "a", "b", "c", "d"),
                         [None, b"22", None, b"4"])
        self.assertEqual(r.cmd("BLOCK.REVERT", 2), 2)
        self.assertEqual(r.cmd("BLOCK.APPLY", 5, "e", "5"), 5)
        self.assertEqual(r.cmd("BLOCK.FLUSH"), 5)
        status, ctype, body = http_get(d.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4")
        self.assertTrue(body.endswith("\n"))

        def metric(name, kind, help_text, value):
            return ("# HELP rollblock_%s %s\n# TYPE rollblock_%s %s\n"
                    "rollblock_%s %s\n" % (name, help_text, name, kind, name,
                                           value))

        # blocks 0, 1, 2, 3 (pop) and 5; block 3 reverted; keys b, c, d, e
        # then b, d, e after the revert of the pop ... c is back.
        expected = [
            metric("applied_height", "gauge",
                   "Newest block applied in memory.", 5),
            metric("durable_height", "gauge",
                   "Newest block fsynced in the journal.", 5),
            metric("current_height", "gauge",
                   "Newest block checkpointed into LevelDB.", 0),
            metric("blocks_applied_total", "counter", "Blocks applied.", 5),
            metric("operations_applied_total", "counter",
                   "Key changes applied (after coalescing within a block).",
                   8),
            metric("sets_total", "counter", "Key changes that set a value.",
                   6),
            metric("deletes_total", "counter",
                   "Key changes that deleted a key.", 2),
            metric("reverts_total", "counter",
                   "Reverts that undid at least one block.", 1),
            metric("blocks_reverted_total", "counter",
                   "Blocks undone by reverts.", 1),
            metric("lookups_total", "counter", "Keys read.", 6),
            metric("client_errors_total", "counter",
                   "Calls refused for bad input or wrong state.", 2),
            metric("checksum_errors_total", "counter",
                   "Checksum failures seen.", 0),
        ]
        for block in expected:
            self.assertIn(block, body)
        after = [
            metric("live_keys", "gauge", "Keys with a value.", 4),
            # a (deleted, but tables never shrink), b, c, d and e in five
            # of the 64 shards: a table of 16 slots of 23 bytes each.
            metric("state_table_bytes", "gauge",
                   "Bytes of the tables holding the state in memory.",
                   1840),
            # Blocks 0, 1, 2 and 5, within the checkpoint lag.
            metric("held_blocks", "gauge",
                   "Durable blocks held in memory until checkpointed.", 4),
            metric("connected_clients", "gauge", "Connected RESP clients.",
                   1),
        ]
        for block in after:
            self.assertIn(block, body)
        self.assertRegex(body, r"# HELP rollblock_checkpoints_total "
                         r"Checkpoints written into LevelDB\.\n# TYPE "
                         r"rollblock_checkpoints_total counter\n"
                         r"rollblock_checkpoints_total \d+\n")
        m = re.search(r"# HELP rollblock_journal_bytes Size of the journal "
                      r"files\.\n# TYPE rollblock_journal_bytes gauge\n"
                      r"rollblock_journal_bytes (\d+)\n", body)
        self.assertIsNotNone(m)
        self.assertGreater(int(m.group(1)), 0)
        m = re.search(r"# HELP rollblock_held_bytes Bytes of the held "
                      r"blocks' records\.\n# TYPE rollblock_held_bytes gauge\n"
                      r"rollblock_held_bytes (\d+)\n", body)
        self.assertIsNotNone(m)
        self.assertGreater(int(m.group(1)), 0)
        counts = {"apply": 5, "revert": 1, "lookup": 3}
        for kind, help_text in [("apply", "Block apply latency."),
                                ("revert", "Revert latency."),
                                ("lookup", "Read call latency.")]:
            full = "rollblock_%s_latency_seconds" % kind
            num = r"[0-9.e+-]+"
            self.assertRegex(body, (
                r"# HELP {0} {1}\n# TYPE {0} summary\n"
                r"{0}\{{quantile=\"0\.5\"\}} {2}\n"
                r"{0}\{{quantile=\"0\.95\"\}} {2}\n"
                r"{0}\{{quantile=\"0\.99\"\}} {2}\n"
                r"{0}_sum {2}\n{0}_count {3}\n").format(
                    full, re.escape(help_text), num, counts[kind]))
        self.assertTrue(body.endswith(
            "# HELP rollblock_actor_restarts_total Crashed store actors "
            "restarted by the supervisor.\n"
            "# TYPE rollblock_actor_restarts_total counter\n"
            "rollblock_actor_restarts_total{actor=\"mutation\"} 0\n"
            "rollblock_actor_restarts_total{actor=\"journal\"} 0\n"
            "rollblock_actor_restarts_total{actor=\"persistence\"} 0\n"
            "rollblock_actor_restarts_total{actor=\"health\"} 0\n"
            "# HELP rollblock_health Health: 1 for the current state.\n"
            "# TYPE rollblock_health gauge\n"
            "rollblock_health{state=\"serving\"} 1\n"
            "rollblock_health{state=\"degraded\"} 0\n"
            "rollblock_health{state=\"fatal\"} 0\n"), body[-400:])
        # Every sample line is name{labels} value, and every family is typed.
        families = re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M)
        self.assertEqual(len(families), 24)
        for line in body.splitlines():
            if not line.startswith("#"):
                self.assertRegex(line, r"^rollblock_[a-z_]+(\{[a-z]+=\"[0-9a-z.]+"
                                       r"\"\})? [0-9.e+-]+$")
        # The same figures over INFO.
        stats = self.info(r, "stats")
        self.assertEqual((stats["blocks_applied"], stats["lookups"],
                          stats["live_keys"], stats["client_errors"]),
                         ("5", "6", "4", "2"))
        self.assertEqual(r.cmd("MGET", "a", "b", "c", "d", "e"),
                         [None, b"22", b"3", b"4", b"5"])
        # connected_clients follows the RESP connections.
        extra = [d.raw() for _ in range(3)]
        for x in extra:
            self.assertEqual(x.cmd("PING"), PONG)
        body = http_get(d.metrics_port, "/metrics")[2]
        self.assertIn("\nrollblock_connected_clients 4\n", body)
        # /health, and anything else is 404.
        self.assertEqual(http_get(d.metrics_port, "/health"),
                         (200, "text/plain", "serving\n"))
        self.assertEqual(http_get(d.metrics_port, "/nope")[0], 404)
        self.assertEqual(d.stop(), 0)


# -- the CAF remote front --------------------------------------------------------


class CafRemoteTest(Base):
    def test_caf_client_applies_and_reads_through_remote_actor(self):
        if not CAF_CLIENT:
            self.skipTest("no caf_remote_client given")
        self.assertTrue(os.access(CAF_CLIENT, os.X_OK), CAF_CLIENT)
        d = self.start("--caf-port", "0")
        r = d.raw()
        self.assertEqual(r.cmd("BLOCK.APPLY", 0, "resp-key", "from-resp"), 0)
        self.assertEqual(r.cmd("BLOCK.APPLY", 4, "caf-key2", "old"), 4)

        def client(height, *keys):
            return subprocess.run([CAF_CLIENT, HOST, str(d.caf_port),
                                   str(height)] + list(keys),
                                  capture_output=True, timeout=60)

        p = client(10, "resp-key")
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        lines = out.splitlines()
        self.assertEqual(len(lines), 7, out)
        # The checkpointed height depends on timing: any of the durable ones.
        self.assertRegex(lines[0], r"^heights_before 4 4 [04]$")
        self.assertRegex(lines[5], r"^heights_after 10 10 (0|4|10)$")
        self.assertEqual(lines[1:5] + lines[6:], [
            "apply 10 -> 10",
            'fetch caf-key1 -> "caf-value-1"',
            'fetch_many -> "caf-value-1" "caf-value-2" <absent> "from-resp"',
            "reapply 10 -> error block_id_not_increasing: block 10 is not "
            "above the applied height 10",
            "done"])
        # What the CAF client wrote, RESP clients read.
        self.assertEqual(r.cmd("MGET", "caf-key1", "caf-key2", "resp-key"),
                         [b"caf-value-1", b"caf-value-2", b"from-resp"])
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [10, 10])
        # A refused apply comes back to the CAF client as the store's error.
        p = client(9)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        self.assertIn("FAILED apply: block_id_not_increasing: block 9 is not "
                      "above the applied height 10\n", out)
        self.assertEqual(r.cmd("BLOCK.HEIGHTS")[:2], [10, 10])
        # A second client applies on top of the first.
        p = client(11)
        self.assertEqual(p.returncode, 0, p.stdout.decode())
        self.assertIn("apply 11 -> 11\n", p.stdout.decode())
        self.assertEqual(self.info(r, "stats")["blocks_applied"], "4")
        self.assertEqual(d.stop(), 0, d.text())
        d2 = self.start()
        self.assertEqual(d2.raw().cmd("BLOCK.HEIGHTS"), [11, 11, 11])


def main():
    global ROLLBLOCKD, CAF_CLIENT
    args = sys.argv[1:]
    paths = []
    while args and os.path.isfile(args[0]):
        paths.append(os.path.abspath(args.pop(0)))
    if paths:
        ROLLBLOCKD = paths[0]
    if len(paths) > 1:
        CAF_CLIENT = paths[1]
    if not ROLLBLOCKD or not os.access(ROLLBLOCKD, os.X_OK):
        sys.exit("usage: rollblockd_test.py <rollblockd> [<caf_remote_client>]"
                 " [unittest args] (or set $ROLLBLOCKD)")
    try:
        program = unittest.main(argv=[sys.argv[0], "-v"] + args, exit=False)
    finally:
        _kill_all()
    result = program.result
    if not result.wasSuccessful() or result.testsRun == 0:
        sys.exit(1)
    if CAF_CLIENT and result.skipped:
        sys.exit(1)


if __name__ == "__main__":
    main()
