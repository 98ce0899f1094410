"""Certificates for TLS tests, made with the openssl command line: a test
CA and leaf certificates it signs."""
import shutil
import subprocess

OPENSSL = shutil.which("openssl")


def run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)


class Pki:
    def __init__(self, d, name="ca"):
        self.d = d
        self.ca = str(d / f"{name}.pem")
        self.ca_key = str(d / f"{name}.key")
        r = run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "30", "-subj", f"/CN=bulwark test {name}",
                "-keyout", self.ca_key, "-out", self.ca)
        assert r.returncode == 0, r.stderr

    def leaf(self, name, dns, days=30, key_type="ec", ips=()):
        """(cert path, key path) for the DNS names (and IP addresses)."""
        key = str(self.d / f"{name}.key")
        csr = str(self.d / f"{name}.csr")
        crt = str(self.d / f"{name}.pem")
        ext = str(self.d / f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=" +
                    ",".join([f"DNS:{n}" for n in dns] + [f"IP:{i}" for i in ips]) + "\n")
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key_type == "ec" \
            else ["-newkey", "rsa:2048"]
        cn = dns[0] if dns else ips[0]
        r = run(OPENSSL, "req", *newkey, "-nodes", "-subj", f"/CN={cn}",
                "-keyout", key, "-out", csr)
        assert r.returncode == 0, r.stderr
        r = run(OPENSSL, "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-CAcreateserial", "-days", str(days), "-extfile", ext, "-out", crt)
        assert r.returncode == 0, r.stderr
        return crt, key
