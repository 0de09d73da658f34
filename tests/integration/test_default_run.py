"""moatd with no configuration: local-only mode, as README's `make run` starts it.

It must listen on 127.0.0.1 only, let anonymous clients in there, and work with
`moat pub` / `moat sub` out of the box.
"""
import os
import socket
import subprocess
import time

from moatlib import MOAT, MOATD, free_port


def listening_addresses(pid, port):
    """The local addresses of LISTEN sockets on port, from /proc/net/tcp{,6}."""
    found = []
    for name in ("tcp", "tcp6"):
        with open("/proc/net/" + name) as f:
            next(f)
            for line in f:
                cols = line.split()
                local, state = cols[1], cols[3]
                addr, p = local.split(":")
                if int(p, 16) == port and state == "0A":
                    found.append(addr)
    return found


def test_no_config_is_local_only_and_usable():
    port = free_port()
    proc = subprocess.Popen([MOATD, "-p", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # 127.0.0.1 in /proc/net/tcp is 0100007F; nothing else, no IPv6 socket
        assert listening_addresses(proc.pid, port) == ["0100007F"]
        sub = subprocess.Popen([MOAT, "sub", "-p", str(port), "-t", "hello/#", "-C", "1", "-v",
                                "-W", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        pub = subprocess.run([MOAT, "pub", "-p", str(port), "-t", "hello/world", "-m", "hi",
                              "-q", "1"], capture_output=True, timeout=10)
        assert pub.returncode == 0, pub.stderr
        out, err = sub.communicate(timeout=10)
        assert sub.returncode == 0, err
        assert out == b"hello/world hi\n"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, out
    assert "anonymous=allowed" in out and "address=127.0.0.1" in out


def test_version_and_help():
    assert subprocess.run([MOATD, "--version"], capture_output=True).stdout.startswith(b"moatd ")
    assert subprocess.run([MOATD, "-h"], capture_output=True).returncode == 0
    bad = subprocess.run([MOATD, "-p", "0"], capture_output=True)
    assert bad.returncode == 2


def test_bad_config_names_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\nlistener %d 127.0.0.1\nmax_inflight_messages lots\n" % free_port())
    r = subprocess.run([MOATD, "-c", str(conf)], capture_output=True, timeout=10)
    assert r.returncode != 0
    assert ("%s:3:" % conf).encode() in r.stderr, r.stderr
