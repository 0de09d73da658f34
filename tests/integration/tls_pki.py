"""A test PKI made with the `openssl` command, for moat's TLS integration tests.

``pki`` (a session-scoped pytest fixture) builds, in a temporary directory:

- ``pki.root``: a root CA (EC P-256) run as an ``openssl ca`` directory (index.txt, serial,
  crlnumber, ca.cnf), so certificates it issued can be revoked and a CRL emitted;
- ``pki.inter``: an intermediate CA signed by the root (pathlen 0), with its own CRL;
- ``pki.other``: an unrelated root CA ("another CA");
- ``pki.server``: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, serverAuth, from the root;
- ``pki.dev1``: CN=device-1 (subject O=moat test, CN=device-1), SAN
  email:device-1@example.com, URI:urn:moat:device-1, clientAuth;
- ``pki.dev2``: CN=device-2, no SAN;
- ``pki.expired``: CN=device-expired, valid in 2020 only;
- ``pki.stranger``: CN=device-1 issued by the other CA;
- ``pki.dev3``: CN=device-3 issued by the intermediate (``chain`` holds leaf + intermediate);
- ``pki.ocsp_signer``: the OCSP responder certificate (extendedKeyUsage OCSPSigning);
- ``pki.dev_ocsp``: CN=device-ocsp with authorityInfoAccess OCSP;URI:http://127.0.0.1:PORT,
  PORT being ``pki.ocsp_port``, chosen once per test session.

Each certificate is a ``Cert`` with ``.cert``, ``.key``, ``.chain`` (paths) and ``.serial``
(hex, upper case, as ``openssl x509 -serial`` prints it). Tests that revoke make their own
certificate with ``pki.root.issue(...)`` so the shared ones stay valid, and write CRLs where
they want them with ``ca.crl(path)``. ``pki.ocsp_responder()`` starts
``openssl ocsp -index ... -port ocsp_port`` over the root's index (for the OCSP tests).

Every openssl call is bounded by a timeout; nothing here touches the network except the
optional OCSP responder, which serves 127.0.0.1 clients only in these tests.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

OPENSSL = shutil.which("openssl") or "openssl"

# A minimal config for `openssl req`, so the system openssl.cnf adds nothing.
REQ_CNF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

# The `openssl ca` config of one CA directory. %(dir)s is filled in.
CA_CNF = """\
[ ca ]
default_ca = this_ca
[ this_ca ]
dir = %(dir)s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 825
default_crl_days = 30
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
countryName = optional
stateOrProvinceName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
emailAddress = optional
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def run(args, timeout=30, **kw):
    """Runs an openssl command; raises with its output if it fails."""
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                       **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s" % (" ".join(args), p.returncode,
                                                    p.stdout.decode("utf-8", "replace")))
    return p.stdout.decode("utf-8", "replace")


def new_key(path):
    run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", path])
    os.chmod(path, 0o600)


def cert_serial(path):
    """The serial of a PEM certificate, as `openssl x509 -serial` prints it (hex)."""
    return run([OPENSSL, "x509", "-in", path, "-noout", "-serial"]).strip().split("=", 1)[1]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cert:
    def __init__(self, name, cert, key, chain, issuer):
        self.name = name
        self.cert = cert
        self.key = key
        self.chain = chain  # the certificate followed by the intermediates up to the root
        self.issuer = issuer
        self.serial = cert_serial(cert)

    def __repr__(self):
        return "Cert(%s, serial=%s)" % (self.name, self.serial)


class CA:
    """One CA as an `openssl ca` directory: issue, revoke, and emit CRLs."""

    def __init__(self, top, name, subject, parent=None, pathlen=None):
        self.name = name
        self.dir = os.path.join(top, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        self.parent = parent
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("01\n")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF % {"dir": self.dir})
        req_cnf = os.path.join(self.dir, "req.cnf")
        with open(req_cnf, "w") as f:
            f.write(REQ_CNF)
        new_key(self.key)
        if parent is None:
            run([OPENSSL, "req", "-config", req_cnf, "-new", "-x509", "-key", self.key,
                 "-subj", subject, "-days", "3650", "-sha256", "-extensions", "v3_ca",
                 "-out", self.cert])
            self.chain_certs = []
        else:
            csr = os.path.join(self.dir, "ca.csr")
            run([OPENSSL, "req", "-config", req_cnf, "-new", "-key", self.key, "-subj", subject,
                 "-out", csr])
            ext = os.path.join(self.dir, "ca.ext")
            with open(ext, "w") as f:
                f.write("[ ext ]\nbasicConstraints = critical, CA:TRUE%s\n"
                        "keyUsage = critical, keyCertSign, cRLSign\n"
                        "subjectKeyIdentifier = hash\n"
                        "authorityKeyIdentifier = keyid:always\n"
                        % (", pathlen:%d" % pathlen if pathlen is not None else ""))
            parent.sign(csr, self.cert, ext, days=3650)
            self.chain_certs = [self.cert] + parent.chain_certs

    # -- issuing --

    def sign(self, csr, out, extfile, days=825, startdate=None, enddate=None):
        args = [OPENSSL, "ca", "-batch", "-config", self.cnf, "-in", csr, "-out", out,
                "-notext", "-extfile", extfile, "-extensions", "ext"]
        if startdate:
            args += ["-startdate", startdate, "-enddate", enddate]
        else:
            args += ["-days", str(days)]
        run(args)

    def issue(self, name, subject, san=None, eku="clientAuth", ocsp_url=None, days=825,
              startdate=None, enddate=None, extra_ext=""):
        """Issues a certificate for a new P-256 key. Returns a Cert; files are DIR/NAME.*.
        san: e.g. "email:a@b, URI:urn:x"; startdate/enddate: YYYYMMDDHHMMSSZ."""
        base = os.path.join(os.path.dirname(self.dir), name)
        key, csr, crt, ext, chain = (base + s for s in (".key", ".csr", ".pem", ".ext",
                                                        ".chain.pem"))
        new_key(key)
        run([OPENSSL, "req", "-config", os.path.join(self.dir, "req.cnf"), "-new", "-key", key,
             "-subj", subject, "-out", csr])
        lines = ["[ ext ]", "basicConstraints = critical, CA:FALSE",
                 "keyUsage = critical, digitalSignature",
                 "subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"]
        if eku:
            lines.append("extendedKeyUsage = %s" % eku)
        if san:
            lines.append("subjectAltName = %s" % san)
        if ocsp_url:
            lines.append("authorityInfoAccess = OCSP;URI:%s" % ocsp_url)
        if extra_ext:
            lines.append(extra_ext)
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.sign(csr, crt, ext, days=days, startdate=startdate, enddate=enddate)
        with open(chain, "w") as out:
            for p in [crt] + self.chain_certs:
                with open(p) as f:
                    out.write(f.read())
        return Cert(name, crt, key, chain, self)

    # -- revocation --

    def revoke(self, cert):
        """Marks cert (a Cert or a path) revoked in this CA's index.txt."""
        path = cert.cert if isinstance(cert, Cert) else cert
        run([OPENSSL, "ca", "-batch", "-config", self.cnf, "-revoke", path,
             "-crl_reason", "keyCompromise"])

    def crl(self, path, days=30, lastupdate=None, nextupdate=None):
        """Writes a fresh CRL (PEM) of this CA's index to path; returns path. The file is
        replaced atomically, so a broker re-reading it never sees half a file.
        lastupdate/nextupdate (YYYYMMDDHHMMSSZ) make a CRL of another time, an expired
        one say."""
        tmp = path + ".tmp"
        args = [OPENSSL, "ca", "-batch", "-config", self.cnf, "-gencrl", "-crlexts", "crl_ext",
                "-out", tmp]
        if nextupdate:
            args += ["-crl_lastupdate", lastupdate, "-crl_nextupdate", nextupdate]
        else:
            args += ["-crldays", str(days)]
        run(args)
        os.replace(tmp, path)
        return path

    def index(self):
        return os.path.join(self.dir, "index.txt")


class PKI:
    def __init__(self, top):
        self.dir = top
        self.ocsp_port = free_port()
        self.ocsp_url = "http://127.0.0.1:%d" % self.ocsp_port
        self.root = CA(top, "root", "/O=moat test/CN=moat test root CA")
        self.inter = CA(top, "inter", "/O=moat test/CN=moat test intermediate CA",
                        parent=self.root, pathlen=0)
        self.other = CA(top, "other", "/O=elsewhere/CN=another CA")
        self.ca = self.root.cert  # what clients and the broker trust
        self.server = self.root.issue("server", "/CN=localhost",
                                      san="DNS:localhost, IP:127.0.0.1", eku="serverAuth")
        self.dev1 = self.root.issue("device-1", "/O=moat test/CN=device-1",
                                    san="email:device-1@example.com, URI:urn:moat:device-1")
        self.dev2 = self.root.issue("device-2", "/O=moat test/CN=device-2")
        self.expired = self.root.issue("device-expired", "/O=moat test/CN=device-expired",
                                       startdate="20200101000000Z", enddate="20200201000000Z")
        self.stranger = self.other.issue("stranger", "/O=elsewhere/CN=device-1")
        self.dev3 = self.inter.issue("device-3", "/O=moat test/CN=device-3")
        self.ocsp_signer = self.root.issue("ocsp-signer", "/O=moat test/CN=moat test OCSP",
                                           eku="OCSPSigning")
        self.dev_ocsp = self.root.issue("device-ocsp", "/O=moat test/CN=device-ocsp",
                                        ocsp_url=self.ocsp_url)
        # CRLs of the root and of root + intermediate (CRL checking covers the whole chain).
        self.root_crl = self.root.crl(os.path.join(top, "root.crl.pem"))
        self.chain_crl = self.crl_bundle(os.path.join(top, "chain.crl.pem"))

    def crl_bundle(self, path, cas=None, **kw):
        """One PEM file with the CRLs of cas (default: root and intermediate); kw as
        CA.crl's."""
        parts = []
        for i, ca in enumerate(cas or (self.root, self.inter)):
            parts.append(ca.crl(path + ".%d" % i, **kw))
        tmp = path + ".tmp"
        with open(tmp, "w") as out:
            for p in parts:
                with open(p) as f:
                    out.write(f.read())
        os.replace(tmp, path)
        return path

    def fresh_client(self, name, cn=None, **kw):
        """A new certificate from the root for one test (revocable without harming others)."""
        return self.root.issue(name, "/O=moat test/CN=%s" % (cn or name), **kw)

    def ocsp_responder(self, ca=None, port=None):
        """Starts `openssl ocsp` answering for ca's index (default: the root) on port
        (default: ocsp_port). Returns the Popen; the caller terminates it. Waits until
        it listens. openssl 3.0 reads the index at start only (in practice): after
        ca.revoke(), restart the responder for the revocation to show. Note that
        `openssl ocsp -port` binds every address; the tests only reach it on 127.0.0.1."""
        ca = ca or self.root
        port = port or self.ocsp_port
        log_path = os.path.join(self.dir, "ocsp-%d.log" % port)
        log = open(log_path, "ab")
        # No -ignore_err: with it, openssl 3.0's responder spins on a connection closed
        # without a request. Readiness is read from its log, not probed with a connection.
        p = subprocess.Popen([OPENSSL, "ocsp", "-index", ca.index(), "-port", str(port),
                              "-rsigner", self.ocsp_signer.cert, "-rkey", self.ocsp_signer.key,
                              "-CA", ca.cert, "-nmin", "1"],
                             stdout=log, stderr=log)
        log.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            if p.poll() is not None:
                raise RuntimeError("openssl ocsp exited at start")
            with open(log_path, "rb") as f:
                if b"waiting for OCSP client connections" in f.read():
                    return p
            time.sleep(0.05)
        p.kill()
        p.wait()
        raise RuntimeError("openssl ocsp did not listen on %d" % port)

    def ocsp_status(self, cert, port=None):
        """Asks the responder about cert: 'good', 'revoked' or 'unknown' (openssl ocsp)."""
        out = run([OPENSSL, "ocsp", "-issuer", cert.issuer.cert, "-cert", cert.cert,
                   "-url", "http://127.0.0.1:%d" % (port or self.ocsp_port),
                   "-CAfile", self.ca, "-timeout", "5"], timeout=15)
        for line in out.splitlines():
            if line.startswith(cert.cert + ":"):
                return line.split(":", 1)[1].strip()
        raise AssertionError("no status in:\n" + out)


@pytest.fixture(scope="session")
def pki():
    top = tempfile.mkdtemp(prefix="moat-pki-")
    yield PKI(top)
    shutil.rmtree(top, ignore_errors=True)
