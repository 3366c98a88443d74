"""The real servers of the company-login tests, each a process on loopback: OpenLDAP's slapd (from
Debian, seeded with directory.ldif, speaking ldap:// with StartTLS and ldaps://) and an OpenID
provider (npm oidc-provider, run by tests/oidc/provider.mjs). Never a mocked endpoint: the
product's backends talk to them over the network as they would to a company's.

scripts/test installs slapd and the provider's npm packages; a missing one fails the tests.
"""

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import ldap
import requests

HERE = Path(__file__).resolve().parent
OIDC_DIR = HERE.parent / "oidc"
SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
STARTUP_SECONDS = 20

# The product's mapping of the test company's groups (in both servers) to roles and teams.
ROLE_GROUPS = {
    "Requesters": ["cratos-requesters"],
    "Approvers": ["cratos-approvers"],
    "Reviewers": ["cratos-auditors"],
}
TEAM_GROUPS = {"shop": ["team-shop"], "payments": ["team-payments"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not answering on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


def _run(*command) -> None:
    subprocess.run(command, check=True, capture_output=True)


class _LoopbackServer:
    """A server process with a scratch directory of its own, gone with it on exit."""

    name = "server"

    def _scratch(self) -> Path:
        self.directory = Path(tempfile.mkdtemp(prefix="cratos-identity-"))
        return self.directory

    def _start(self, command: list[str], ports: list[int], env=None) -> None:
        log = self.directory / "server.log"
        self.process = subprocess.Popen(
            command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        try:
            for port in ports:
                _wait_for_port(port, self.process, log)
        except RuntimeError as exc:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{self.name} {exc}") from None

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


class Slapd(_LoopbackServer):
    """OpenLDAP with the test company's directory."""

    name = "slapd"
    SUFFIX = "dc=cratos,dc=test"
    ADMIN_DN = "cn=admin,dc=cratos,dc=test"
    ADMIN_PASSWORD = "admin-pw"
    READER_DN = "cn=cratos-reader,ou=services,dc=cratos,dc=test"
    READER_PASSWORD = "reader-pw"
    PASSWORD = "directory-pw"  # everyone's in directory.ldif
    PEOPLE = f"ou=people,{SUFFIX}"
    GROUPS = f"ou=groups,{SUFFIX}"

    def __enter__(self) -> "Slapd":
        for binary in (SLAPD, SLAPADD):
            if not binary.exists():
                raise RuntimeError(
                    f"{binary} is missing: the LDAP tests need Debian's slapd "
                    "(apt-get install slapd ldap-utils; scripts/test does it)."
                )
        self._scratch()
        self.port, self.tls_port = free_port(), free_port()
        self._certificates()
        (self.directory / "data").mkdir()
        config = self.directory / "slapd.conf"
        config.write_text(self._config())
        _run(str(SLAPADD), "-q", "-f", str(config), "-l", str(HERE / "directory.ldif"))
        self._start(
            [str(SLAPD), "-f", str(config), "-d", "0", "-h", f"{self.uri} {self.ldaps_uri}"],
            [self.port, self.tls_port],
        )
        return self

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")

    def _certificates(self) -> None:
        """A CA of the test's own and the server's certificate for 127.0.0.1, signed by it."""
        d = self.directory
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        for command in (
            f"req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
            f"-keyout {d}/ca.key -out {d}/ca.pem",
            f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
            f"-keyout {d}/server.key -out {d}/server.csr",
            f"x509 -req -in {d}/server.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial "
            f"-days 2 -extfile {d}/san.cnf -out {d}/server.pem",
        ):
            _run("openssl", *command.split())

    def _config(self) -> str:
        d = self.directory
        return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 16777216
suffix "{self.SUFFIX}"
rootdn "{self.ADMIN_DN}"
rootpw {self.ADMIN_PASSWORD}
directory {d}/data
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""

    # -- changes a test makes, as the company's directory administrators would --------------

    def _admin(self):
        connection = ldap.initialize(self.uri)
        connection.simple_bind_s(self.ADMIN_DN, self.ADMIN_PASSWORD)
        return connection

    def person_dn(self, uid: str) -> str:
        return f"uid={uid},{self.PEOPLE}"

    def add_person(self, uid: str, *groups: str) -> None:
        connection = self._admin()
        connection.add_s(
            self.person_dn(uid),
            [
                ("objectClass", [b"inetOrgPerson"]),
                ("uid", [uid.encode()]),
                ("cn", [uid.encode()]),
                ("sn", [uid.encode()]),
                ("userPassword", [self.PASSWORD.encode()]),
            ],
        )
        for group in groups:
            self.add_member(group, uid)

    def delete_person(self, uid: str) -> None:
        connection = self._admin()
        for dn, _ in connection.search_s(
            self.GROUPS, ldap.SCOPE_ONELEVEL, f"(member={self.person_dn(uid)})", ["cn"]
        ):
            connection.modify_s(dn, [(ldap.MOD_DELETE, "member", [self.person_dn(uid).encode()])])
        connection.delete_s(self.person_dn(uid))

    def add_member(self, group: str, uid: str) -> None:
        self._admin().modify_s(
            f"cn={group},{self.GROUPS}", [(ldap.MOD_ADD, "member", [self.person_dn(uid).encode()])]
        )

    def remove_member(self, group: str, uid: str) -> None:
        self._admin().modify_s(
            f"cn={group},{self.GROUPS}",
            [(ldap.MOD_DELETE, "member", [self.person_dn(uid).encode()])],
        )


class OpenIDProvider(_LoopbackServer):
    """oidc-provider with the people in `accounts` (changeable while it runs: set_account)."""

    name = "the OpenID provider"
    PASSWORD = "provider-pw"

    def __enter__(self) -> "OpenIDProvider":
        node_modules = OIDC_DIR / "node_modules" / "oidc-provider"
        if not node_modules.exists():
            raise RuntimeError(
                f"{node_modules} is missing: run `npm ci --prefix tests/oidc` (scripts/test does)."
            )
        self._scratch()
        self.accounts_file = self.directory / "accounts.json"
        self.accounts: dict[str, dict] = {}
        self._save()
        self.port = free_port()
        self._start(
            ["node", str(OIDC_DIR / "provider.mjs")],
            [self.port],
            env={"PORT": str(self.port), "ACCOUNTS": str(self.accounts_file), "PATH": "/usr/bin"},
        )
        return self

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _save(self) -> None:
        self.accounts_file.write_text(json.dumps(self.accounts))

    def set_account(self, username: str, *, groups: list[str], email: str = "") -> None:
        self.accounts[username] = {
            "password": self.PASSWORD,
            "email": email or f"{username}@cratos.test",
            "given_name": username.title(),
            "family_name": "Tester",
            "groups": groups,
        }
        self._save()

    def register_client(self, base_url: str) -> dict:
        """A relying party for the product served at `base_url` (dynamic client registration):
        the settings that point the product at this provider."""
        response = requests.post(
            f"{self.issuer}/reg",
            json={
                "redirect_uris": [f"{base_url}/oidc/callback/"],
                "post_logout_redirect_uris": [f"{base_url}/accounts/login/"],
                "token_endpoint_auth_method": "client_secret_post",
            },
            timeout=5,
        )
        response.raise_for_status()
        client = response.json()
        return {
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_RP_CLIENT_ID": client["client_id"],
            "OIDC_RP_CLIENT_SECRET": client["client_secret"],
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.issuer}/auth",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.issuer}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.issuer}/me",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.issuer}/jwks",
            "OIDC_OP_LOGOUT_ENDPOINT": f"{self.issuer}/session/end",
            "OIDC_RP_SCOPES": "openid email profile groups",
        }
