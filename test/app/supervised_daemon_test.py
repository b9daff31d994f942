#!/usr/bin/python3
"""Supervision outside the store: rollblockd under a process supervisor.

    /usr/bin/python3 supervised_daemon_test.py <rollblockd> <rollblock> \
        <rollblockd.service> [unittest args ...]

A supervisor loop restarts rollblockd whenever it exits with a failure (like
systemd's Restart=on-failure; SIGKILL counts as one) and stops on exit 0. The
test SIGKILLs the daemon several times while a client writes blocks in the
synchronous mode, and checks after each kill that the daemon comes back, that
`rollblock health` reports serving, and at the end that every acknowledged
block is there with its value. `rollblock health` is also checked against
fake /health endpoints for its exit codes (0 serving, 1 degraded, 2 fatal,
3 unreachable), and the systemd unit with `systemd-analyze verify` when that
tool exists. Run it with /usr/bin/python3 (Debian's python3-redis).
"""

import http.server
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import redis

ROLLBLOCKD = ROLLBLOCK = UNIT = None
HOST = "127.0.0.1"
TIMEOUT = 30.0


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def probe(port, timeout=5):
    """Runs `rollblock health`; returns (exit code, printed line)."""
    p = subprocess.run([ROLLBLOCK, "health", "--port", str(port),
                        "--timeout", str(timeout)],
                       capture_output=True, timeout=timeout + 20)
    return p.returncode, p.stdout.decode().strip()


class Supervisor(threading.Thread):
    """Restarts rollblockd on failure, like Restart=on-failure, RestartSec."""

    def __init__(self, args, log_path, restart_sec=0.2):
        super().__init__(daemon=True)
        self.args = args
        self.log_path = log_path
        self.restart_sec = restart_sec
        self.lock = threading.Lock()
        self.proc = None
        self.starts = 0
        self.exit_codes = []

    def run(self):
        while True:
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(self.args, stdout=log,
                                        stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            with self.lock:
                self.proc = proc
                self.starts += 1
            rc = proc.wait()
            with self.lock:
                self.exit_codes.append(rc)
            if rc == 0 or rc == 2:  # RestartPreventExitStatus=2
                return
            time.sleep(self.restart_sec)

    def current(self):
        with self.lock:
            return self.proc, self.starts


class Writer(threading.Thread):
    """Writes block h (key b<h> = v<h>) for h = 1, 2, ...; a block counts as
    acknowledged when BLOCK.APPLY answered it. After a lost connection it
    reconnects and asks BLOCK.HEIGHTS whether the block made it."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.acked = 0
        self.reconnects = 0
        self.error = None
        self.stop = threading.Event()

    def client(self):
        return redis.Redis(host=HOST, port=self.port, socket_timeout=TIMEOUT,
                           socket_connect_timeout=2)

    def run(self):
        try:
            c = self.client()
            h = 1
            while not self.stop.is_set():
                try:
                    got = c.execute_command("BLOCK.APPLY", h, "b%d" % h,
                                            "v%d" % h)
                    if got != h:
                        raise AssertionError("BLOCK.APPLY %d -> %r" % (h, got))
                    self.acked = h
                    h += 1
                except (redis.ConnectionError, redis.TimeoutError):
                    self.reconnects += 1
                    while not self.stop.is_set():
                        time.sleep(0.05)
                        try:
                            c = self.client()
                            applied = c.execute_command("BLOCK.HEIGHTS")[0]
                            break
                        except (redis.ConnectionError, redis.TimeoutError):
                            continue
                    else:
                        return
                    # Synchronous mode: a block the daemon applied before
                    # the kill is durable, even if its reply was lost.
                    if applied >= h:
                        self.acked = h
                        h += 1
        except Exception as e:  # reported by the test
            self.error = e


class SupervisedDaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rollblockd-supervised-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_serving(self, metrics_port, starts, sup):
        """Waits until the supervisor started the daemon `starts` times and
        the probe says serving."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            proc, n = sup.current()
            if n >= starts:
                code, line = probe(metrics_port, timeout=2)
                if code == 0:
                    self.assertEqual(line, "serving")
                    return proc
                self.assertEqual(code, 3, line)  # still starting
            time.sleep(0.05)
        self.fail("rollblockd did not come back serving:\n"
                  + open(os.path.join(self.tmp, "log")).read())

    def test_sigkilled_daemon_comes_back_and_keeps_acknowledged_blocks(self):
        port, metrics_port = free_port(), free_port()
        args = [ROLLBLOCKD, "--data-dir", os.path.join(self.tmp, "data"),
                "--port", str(port), "--metrics-port", str(metrics_port),
                "--durability", "sync"]
        sup = Supervisor(args, os.path.join(self.tmp, "log"))
        sup.start()
        proc = self.wait_serving(metrics_port, 1, sup)
        writer = Writer(port)
        writer.start()
        rng = random.Random(5)
        kills = 5
        for i in range(kills):
            target = writer.acked + 20 + rng.randrange(80)
            deadline = time.monotonic() + TIMEOUT
            while writer.acked < target:
                self.assertLess(time.monotonic(), deadline, "writer stalled")
                self.assertIsNone(writer.error)
                time.sleep(0.005)
            proc.kill()  # SIGKILL
            proc = self.wait_serving(metrics_port, i + 2, sup)
        target = writer.acked + 20
        deadline = time.monotonic() + TIMEOUT
        while writer.acked < target:
            self.assertLess(time.monotonic(), deadline, "writer stalled")
            time.sleep(0.005)
        writer.stop.set()
        writer.join(timeout=TIMEOUT)
        self.assertFalse(writer.is_alive())
        self.assertIsNone(writer.error)
        self.assertEqual(sup.exit_codes, [-9] * kills)
        self.assertGreaterEqual(writer.reconnects, 1)
        acked = writer.acked
        c = redis.Redis(host=HOST, port=port, socket_timeout=TIMEOUT)
        applied, durable, _ = c.execute_command("BLOCK.HEIGHTS")
        self.assertEqual(applied, acked)  # the writer stopped after a reply
        self.assertEqual(durable, acked)
        keys = ["b%d" % h for h in range(1, acked + 1)]
        for i in range(0, len(keys), 500):
            got = c.execute_command("MGET", *keys[i:i + 500])
            want = [("v%d" % h).encode()
                    for h in range(i + 1, min(i + 500, acked) + 1)]
            self.assertEqual(got, want)
        c.close()
        # A clean stop (SIGTERM, exit 0) ends the supervision; the probe then
        # finds nobody.
        proc.terminate()
        sup.join(timeout=TIMEOUT)
        self.assertFalse(sup.is_alive())
        self.assertEqual(sup.exit_codes, [-9] * kills + [0])
        code, line = probe(metrics_port, timeout=2)
        self.assertEqual(code, 3)
        self.assertTrue(line.startswith("unreachable: no answer from "
                                        "127.0.0.1:%d" % metrics_port), line)
        sys.stderr.write("[%d SIGKILLs, %d blocks acknowledged] "
                         % (kills, acked))


class FakeHealth(http.server.BaseHTTPRequestHandler):
    answer = (200, "serving\n")

    def do_GET(self):
        status, body = FakeHealth.answer if self.path == "/health" else \
            (404, "no\n")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class HealthProbeTest(unittest.TestCase):
    def test_exit_codes_follow_the_state(self):
        server = http.server.HTTPServer((HOST, 0), FakeHealth)
        port = server.server_address[1]
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            cases = [
                ((200, "serving\n"), 0, "serving"),
                ((503, "degraded restarting the journal actor\n"), 1,
                 "degraded restarting the journal actor"),
                ((503, "fatal restart_limit_exceeded: too many\n"), 2,
                 "fatal restart_limit_exceeded: too many"),
                ((200, "degraded but 200\n"), 3,
                 "unreachable: 127.0.0.1:%d answered HTTP 200 'degraded but "
                 "200', not a rollblockd health report" % port),
                ((500, "oops\n"), 3,
                 "unreachable: 127.0.0.1:%d answered HTTP 500 'oops', not a "
                 "rollblockd health report" % port),
            ]
            for answer, code, line in cases:
                FakeHealth.answer = answer
                self.assertEqual(probe(port), (code, line), answer)
        finally:
            server.shutdown()
            server.server_close()

    def test_bad_usage_exits_2(self):
        p = subprocess.run([ROLLBLOCK, "health"], capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr.decode(),
                         "rollblock: health needs option '--port PORT' "
                         "(rollblockd's --metrics-port) (see rollblock "
                         "--help)\n")


class UnitFileTest(unittest.TestCase):
    def test_systemd_unit_verifies(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            self.skipTest("systemd-analyze is not installed")
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("Restart=on-failure\n", text)
        with tempfile.TemporaryDirectory() as tmp:
            # The unit as installed, run against the binary just built.
            path = os.path.join(tmp, "rollblockd.service")
            with open(path, "w") as f:
                f.write(text.replace("/usr/local/bin/rollblockd",
                                     os.path.abspath(ROLLBLOCKD)))
            p = subprocess.run([tool, "verify", path], capture_output=True,
                               timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stderr.decode(), "")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: supervised_daemon_test.py <rollblockd> <rollblock> "
                 "<rollblockd.service> [unittest args]")
    ROLLBLOCKD, ROLLBLOCK, UNIT = sys.argv[1:4]
    unittest.main(argv=[sys.argv[0]] + sys.argv[4:])
