#!/usr/bin/env python3
"""Lints the schemaop chart and checks what it renders, with Helm's own Go
library (the helm_sdkpy bindings), offline.

The bindings offer lint and install but no `helm template`, and their lint
takes no values. So:

- lint runs on a copy of the chart whose values.yaml has the values file
  merged in, as `helm lint -f FILE` would see it;
- rendering is a real `helm install` against a small in-process stand-in for
  the Kubernetes API server (discovery, and objects kept in memory), with
  Helm's release storage in memory. Helm validates the values against
  values.schema.json, checks kubeVersion, renders, and sends every object; the
  release's manifest is what `helm template` would print.

Run by scripts/check-chart. Prints one line per check and a closing
"N passed, N failed" line; exits non-zero if anything failed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

# Keep releases off the (pretend) cluster's Secrets. The Go library reads the
# environment the process started with, so set it by starting again.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})

import helm_sdkpy as helm  # noqa: E402
import yaml  # noqa: E402

RELEASE = "schemaop"
NAMESPACE = "schemaop-system"
SEVERITIES = {0: "unknown", 1: "info", 2: "warning", 3: "error"}

# ---------------------------------------------------------------------------
# A stand-in Kubernetes API server: just enough for `helm install`.
# ---------------------------------------------------------------------------

# group -> (version, [(plural, kind, namespaced)]): the APIs the chart uses.
API_GROUPS: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {
    "": ("v1", [("namespaces", "Namespace", False), ("secrets", "Secret", True),
                ("configmaps", "ConfigMap", True), ("services", "Service", True),
                ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True)]),
    "apps": ("v1", [("deployments", "Deployment", True)]),
    "policy": ("v1", [("poddisruptionbudgets", "PodDisruptionBudget", True)]),
    "rbac.authorization.k8s.io": ("v1", [
        ("roles", "Role", True), ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False), ("clusterrolebindings", "ClusterRoleBinding", False)]),
    "networking.k8s.io": ("v1", [("networkpolicies", "NetworkPolicy", True)]),
    "monitoring.coreos.com": ("v1", [("servicemonitors", "ServiceMonitor", True)]),
    "apiextensions.k8s.io": ("v1", [("customresourcedefinitions", "CustomResourceDefinition", False)]),
    "schemaop.dev": ("v1alpha1", [("schemamigrations", "SchemaMigration", True)]),
}
PLURALS = {plural for _, resources in API_GROUPS.values() for plural, _, _ in resources}


class FakeAPIServer:
    """Serves discovery, creates and gets on 127.0.0.1, and records what was created."""

    def __init__(self, kube_version: str = "1.33") -> None:
        self.kube_version = kube_version
        self.objects: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep the output to the checks
                pass

            def reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def not_found(self) -> None:
                self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404, "message": "not found"})

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                body = server.discovery(path)
                if body is not None:
                    return self.reply(200, body)
                if path in server.objects:
                    return self.reply(200, server.objects[path])
                if path.rsplit("/", 1)[-1] in PLURALS:
                    return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})
                self.not_found()

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0].rstrip("/")
                try:
                    obj = json.loads(raw)
                except ValueError:
                    server.unexpected.append(f"POST {path} with a non-JSON body")
                    return self.reply(415, {"kind": "Status", "status": "Failure", "code": 415})
                if obj.get("kind") == "CustomResourceDefinition":
                    # Helm waits for a CRD to be established before it goes on.
                    obj["status"] = {"acceptedNames": obj["spec"]["names"], "conditions": [
                        {"type": "NamesAccepted", "status": "True"},
                        {"type": "Established", "status": "True"}]}
                server.objects[f"{path}/{obj['metadata']['name']}"] = obj
                server.created.append(obj)
                self.reply(201, obj)

            def other(self) -> None:
                server.unexpected.append(f"{self.command} {self.path}")
                self.not_found()

            do_PUT = do_PATCH = do_DELETE = other

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            major, minor = self.kube_version.split(".")
            return {"major": major, "minor": minor, "gitVersion": f"v{self.kube_version}.0",
                    "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                 "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version}}
                for group, (version, _) in API_GROUPS.items() if group]}
        for group, (version, resources) in API_GROUPS.items():
            if path == (f"/apis/{group}/{version}" if group else "/api/v1"):
                return {"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": f"{group}/{version}" if group else version,
                        "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                                       "kind": kind, "verbs": ["create", "delete", "get", "list", "patch",
                                                               "update", "watch"]}
                                      for plural, kind, namespaced in resources]}
        return None

    def kubeconfig(self) -> str:
        port = self.httpd.server_address[1]
        # YAML: the bindings tell a kubeconfig's text from a file name by it.
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
        })

    def __enter__(self) -> "FakeAPIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# Helm, through the bindings.
# ---------------------------------------------------------------------------


def merge_values(base: Any, override: Any) -> Any:
    """Helm's merge of a values file over the defaults: maps merge key by key,
    null deletes a key, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def lint(chart: Path, values: dict[str, Any] | None) -> list[tuple[str, str]]:
    """`helm lint` of the chart with `values` over its defaults; returns the
    (severity, path) of each message. The bindings' messages carry no text."""
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / chart.name
        shutil.copytree(chart, copy_dir)
        if values:
            defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
            (copy_dir / "values.yaml").write_text(yaml.safe_dump(merge_values(defaults, values)))
        result = asyncio.run(helm.Lint(helm.Configuration(namespace=NAMESPACE)).run(str(copy_dir)))
    return [(SEVERITIES.get(m.get("Severity"), str(m.get("Severity"))), m.get("Path", "?"))
            for m in result.get("Messages") or []]


class Rendered:
    """The objects a release created, by kind and name."""

    def __init__(self, release: dict[str, Any], created: list[dict[str, Any]]) -> None:
        self.docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
        self.notes: str = release["info"].get("notes", "")
        self.created = created

    def kinds(self) -> list[str]:
        return sorted(d["kind"] for d in self.docs)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        if len(found) != 1:
            raise AssertionError(f"expected one {kind}, found {len(found)}")
        return found[0]

    def container(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]


def render(chart: Path, values: dict[str, Any] | None, kube_version: str = "1.33") -> Rendered:
    """`helm install` into the stand-in API server; raises helm.HelmError when
    Helm refuses (schema, kubeVersion, template errors)."""
    with FakeAPIServer(kube_version) as api:
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=api.kubeconfig())
        release = asyncio.run(helm.Install(config).run(
            RELEASE, str(chart), values=values or None, wait=False, timeout=60))
        if api.unexpected:
            raise AssertionError(f"unexpected API calls: {api.unexpected}")
        return Rendered(release, api.created)


# ---------------------------------------------------------------------------
# The checks.
# ---------------------------------------------------------------------------

LEADER_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["schemaop-leader"],
     "verbs": ["get", "patch"]},
]
WATCH_RULES = [
    {"apiGroups": ["schemaop.dev"], "resources": ["schemamigrations"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["schemaop.dev"], "resources": ["schemamigrations/status"], "verbs": ["patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
STANDARD_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "helm.sh/chart"]
SELECTOR = {"app.kubernetes.io/name": "schemaop", "app.kubernetes.io/instance": RELEASE}


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            detail = fn()
        except (AssertionError, KeyError, IndexError, TypeError, helm.HelmError) as error:
            self.failed += 1
            print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
        else:
            self.passed += 1
            print(f"ok    {name}" + (f" ({detail})" if detail else ""), flush=True)


def expect(actual: Any, wanted: Any, what: str) -> None:
    if actual != wanted:
        raise AssertionError(f"{what}: wanted {wanted!r}, got {actual!r}")


def expect_rules(actual: list[dict[str, Any]], wanted: list[dict[str, Any]], what: str) -> None:
    """Rules exactly as listed, in order; on a mismatch, say which differ."""
    if actual != wanted:
        extra = [rule for rule in actual if rule not in wanted]
        missing = [rule for rule in wanted if rule not in actual]
        raise AssertionError(f"{what}: not granted as listed; extra {extra}, missing {missing}"
                             + ("" if extra or missing else ", order differs"))


def lint_clean(chart: Path, values: dict[str, Any] | None) -> str:
    # Strict, as `helm lint --strict`: a warning fails like an error.
    messages = lint(chart, values)
    bad = [m for m in messages if m[0] in ("warning", "error", "unknown")]
    if bad:
        raise AssertionError(f"lint reported {bad} (the bindings give no text: see the render checks' errors)")
    return ", ".join(f"{sev} on {path}" for sev, path in messages) or "no messages"


def lint_fails(chart: Path, values: dict[str, Any]) -> str:
    errors = [m for m in lint(chart, values) if m[0] == "error"]
    if not errors:
        raise AssertionError("lint passed")
    return ", ".join(f"{sev} on {path}" for sev, path in errors)


def render_fails(chart: Path, values: dict[str, Any] | None, needle: str, kube_version: str = "1.33") -> str:
    try:
        render(chart, values, kube_version)
    except helm.HelmError as error:
        message = " ".join(str(error).split())
        # Schema errors: the part that names the value.
        message = message[message.index("- at "):] if "- at " in message else message
        if needle not in message:
            raise AssertionError(f"failed, but not with {needle!r}: {message}") from None
        return message[:160] + ("..." if len(message) > 160 else "")
    raise AssertionError("Helm accepted it")


def check_deployment_defaults(r: Rendered) -> str:
    deploy = r.one("Deployment")
    expect(deploy["spec"]["replicas"], 2, "replicas")
    pod = deploy["spec"]["template"]["spec"]
    expect(pod["automountServiceAccountToken"], True, "automountServiceAccountToken")
    expect(pod["terminationGracePeriodSeconds"], 60, "terminationGracePeriodSeconds")
    expect(pod["serviceAccountName"], RELEASE, "serviceAccountName")
    c = r.container()
    expect(c["image"], "ghcr.io/schemaop/schemaop:0.1.0", "image (tag defaults to appVersion)")
    expect(c["args"], ["run", "--log-format=json", "--log-level=info", "--max-concurrent-runs=8",
                       "--lease-duration=15s", "--metrics-addr=0.0.0.0:8080",
                       "--job-wrapper-image=ghcr.io/schemaop/schemaop:0.1.0"], "args")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    expect(env, {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}, "downward API env")
    expect(c["ports"], [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}], "ports")
    expect(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"}, "liveness probe")
    expect(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"}, "readiness probe")
    expect(sorted(c["resources"]), ["limits", "requests"], "resources")
    return "2 replicas, run --log-format=json, POD_NAME/POD_NAMESPACE, /healthz and /readyz on metrics"


def check_security(r: Rendered) -> str:
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    psc, csc = pod["securityContext"], r.container()["securityContext"]
    for where, sc in (("pod", psc), ("container", csc)):
        expect(sc.get("runAsNonRoot"), True, f"{where} runAsNonRoot")
        expect(sc.get("runAsUser"), 65532, f"{where} runAsUser")
        expect(sc.get("seccompProfile"), {"type": "RuntimeDefault"}, f"{where} seccompProfile")
    expect(csc.get("readOnlyRootFilesystem"), True, "readOnlyRootFilesystem")
    expect(csc.get("allowPrivilegeEscalation"), False, "allowPrivilegeEscalation")
    expect(csc.get("capabilities"), {"drop": ["ALL"]}, "capabilities")
    return "non-root 65532, read-only root, no privilege escalation, drop ALL, RuntimeDefault seccomp"


def check_spread_and_pdb(r: Rendered) -> str:
    spread = r.one("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    expect([(s["topologyKey"], s["whenUnsatisfiable"]) for s in spread],
           [("kubernetes.io/hostname", "ScheduleAnyway"), ("topology.kubernetes.io/zone", "ScheduleAnyway")],
           "topology spread")
    for s in spread:
        expect(s["labelSelector"], {"matchLabels": SELECTOR}, "spread labelSelector")
    pdb = r.one("PodDisruptionBudget")["spec"]
    expect(pdb, {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}, "PodDisruptionBudget")
    return "nodes and zones, ScheduleAnyway; PDB maxUnavailable 1"


def check_cluster_rbac(r: Rendered) -> str:
    expect(sorted(r.kinds()), sorted(["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget",
                                      "Role", "RoleBinding", "ServiceAccount"]), "objects rendered")
    role = r.one("Role")
    expect(role["metadata"]["namespace"], NAMESPACE, "leader Role namespace")
    expect_rules(role["rules"], LEADER_RULES, "leader Role")
    expect_rules(r.one("ClusterRole")["rules"], WATCH_RULES, "ClusterRole")
    for binding in (r.one("RoleBinding"), r.one("ClusterRoleBinding")):
        expect(binding["subjects"], [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}],
               f"{binding['kind']} subjects")
    expect(r.one("ClusterRoleBinding")["roleRef"]["name"], r.one("ClusterRole")["metadata"]["name"],
           "ClusterRoleBinding roleRef")
    expect("--watch-namespace" in " ".join(r.container()["args"]), False, "no --watch-namespace")
    return "leader Role and ClusterRole rules exactly as listed, no --watch-namespace"


def check_labels(r: Rendered) -> str:
    for doc in r.docs:
        labels = doc["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        if missing:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}")
    expect(r.docs[0]["metadata"]["labels"]["helm.sh/chart"], "schemaop-0.1.0", "helm.sh/chart")
    return f"on all {len(r.docs)} objects"


def check_crd_installed(r: Rendered) -> str:
    names = [o["metadata"]["name"] for o in r.created if o["kind"] == "CustomResourceDefinition"]
    expect(names, ["schemamigrations.schemaop.dev"], "CRDs sent from crds/")
    expect(r.created[0]["kind"], "CustomResourceDefinition", "first object sent")
    return "schemamigrations.schemaop.dev, before the templates"


def check_notes(r: Rendered, namespace: str) -> str:
    for step in ("create secret generic app-db", "create configmap app-migrations", "kind: SchemaMigration",
                 f"kubectl -n {namespace} get smig", f"kubectl -n {namespace} wait --for=condition=Ready smig/app"):
        if step not in r.notes:
            raise AssertionError(f"NOTES.txt lacks {step!r}")
    return f"Secret, ConfigMap, SchemaMigration, get smig, kubectl wait, in {namespace}"


def check_namespaced(r: Rendered, watched: str) -> str:
    expect([k for k in r.kinds() if k.startswith("Cluster")], [], "cluster-scoped RBAC")
    roles = {(role["metadata"]["namespace"], role["metadata"]["name"]): role["rules"] for role in r.all("Role")}
    expect(sorted(roles), sorted([(NAMESPACE, f"{RELEASE}-leader-election"), (watched, f"{RELEASE}-watch")]),
           "Roles")
    expect_rules(roles[(NAMESPACE, f"{RELEASE}-leader-election")], LEADER_RULES, "leader Role")
    expect_rules(roles[(watched, f"{RELEASE}-watch")], WATCH_RULES, f"Role in {watched}")
    for binding in r.all("RoleBinding"):
        expect(binding["subjects"], [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}],
               "RoleBinding subjects")
    expect(sorted(b["metadata"]["namespace"] for b in r.all("RoleBinding")), sorted([NAMESPACE, watched]),
           "RoleBinding namespaces")
    args = r.container()["args"]
    expect([a for a in args if a.startswith("--watch-namespace")], [f"--watch-namespace={watched}"], "args")
    return f"Role and RoleBinding in {watched}, --watch-namespace={watched}, no ClusterRole"


def check_everything_on(r: Rendered) -> str:
    expect(sorted(set(r.kinds())), sorted({"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy",
                                           "PodDisruptionBudget", "Role", "RoleBinding", "Service",
                                           "ServiceAccount", "ServiceMonitor"}), "objects rendered")
    c = r.container()
    expect(c["image"], "registry.example.com/platform/schemaop:0.1.0-rc.1@sha256:" + "0123456789abcdef" * 4, "image")
    expect(c["args"][-3:], ["--metrics-addr=[::]:9090",
                            "--job-wrapper-image=registry.example.com/platform/schemaop-wrapper:0.1.0",
                            "--namespace=schemaop-system"], "args end")
    expect(c["ports"][0]["containerPort"], 9090, "container port")
    pod = r.one("Deployment")["spec"]["template"]
    expect(pod["metadata"]["annotations"], {"example.com/team": "platform"}, "pod annotations")
    expect(pod["metadata"]["labels"]["example.com/tier"], "control-plane", "pod labels")
    expect(pod["spec"]["priorityClassName"], "platform-critical", "priorityClassName")
    expect(pod["spec"]["serviceAccountName"], "schemaop-operator", "serviceAccountName")
    spread = pod["spec"]["topologySpreadConstraints"]
    expect(spread[0]["matchLabelKeys"], ["pod-template-hash"], "spread passes extra fields through")
    expect(r.one("PodDisruptionBudget")["spec"].get("maxUnavailable"), None, "PDB maxUnavailable")
    expect(r.one("PodDisruptionBudget")["spec"]["minAvailable"], 1, "PDB minAvailable")

    svc = r.one("Service")
    expect(svc["spec"]["ports"], [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}],
           "Service ports")
    expect(svc["spec"]["selector"], SELECTOR, "Service selector")
    monitor = r.one("ServiceMonitor")
    expect(monitor["apiVersion"], "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
    expect(monitor["spec"]["selector"]["matchLabels"],
           {k: v for k, v in svc["metadata"]["labels"].items() if k in SELECTOR}, "ServiceMonitor selects the Service")
    expect([(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]], [("metrics", "/metrics")], "endpoints")
    expect(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack", "ServiceMonitor labels")

    policy = r.one("NetworkPolicy")["spec"]
    expect(policy["policyTypes"], ["Ingress", "Egress"], "policyTypes")
    expect(policy["podSelector"], {"matchLabels": SELECTOR}, "podSelector")
    expect(len(policy["ingress"]), 1, "ingress rules")
    expect(policy["ingress"][0]["ports"], [{"port": "metrics", "protocol": "TCP"}], "ingress port")
    egress_ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    expect(egress_ports, [[(53, "TCP"), (53, "UDP")], [(443, "TCP"), (6443, "TCP")],
                          [(5432, "TCP"), (6432, "TCP")], [(443, "TCP")]], "egress ports")
    expect(policy["egress"][1]["to"], [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "API server CIDRs")
    expect(len(policy["egress"][2]["to"]), 2, "PostgreSQL peers")
    return "Service, ServiceMonitor, NetworkPolicy (metrics in; DNS, API server, PostgreSQL out), PDB minAvailable"


# Values that are Kubernetes objects copied as given: documented as a whole.
MAP_VALUES = {"resources.", "podSecurityContext.", "securityContext.", "livenessProbe.", "readinessProbe."}


def leaf_paths(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the values a user sets: maps are walked, anything else
    (lists included) is a leaf."""
    if isinstance(values, dict) and values and prefix not in MAP_VALUES:
        return [path for key, value in values.items() for path in leaf_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def check_documented(chart: Path) -> str:
    """Every value appears in the README's values table, by its full path or
    as `parent.path` ... `.leaf` in a grouped row."""
    readme = (chart / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    values = yaml.safe_load((chart / "values.yaml").read_text())
    missing = []
    for path in leaf_paths(values):
        parent, _, leaf = path.rpartition(".")
        if not any(f"`{path}`" in row or (parent and f"`{parent}." in row and f"`.{leaf}`" in row)
                   for row in rows):
            missing.append(path)
    if missing:
        raise AssertionError(f"not in the README's values table: {missing}")
    return f"{len(leaf_paths(values))} values"


def as_rendered(outcome: Rendered | helm.HelmError) -> Rendered:
    """A render done once for several checks: each reports its failure."""
    if isinstance(outcome, helm.HelmError):
        raise outcome
    return outcome


def main() -> int:
    chart = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    ci = chart / "ci"
    namespaced = yaml.safe_load((ci / "namespaced-values.yaml").read_text())
    everything = yaml.safe_load((ci / "all-values.yaml").read_text())
    checks = Checks()
    check = checks.check
    print(f"Helm library: {helm.get_version()}")

    check("README documents every value", lambda: check_documented(chart))
    check("lint, default values", lambda: lint_clean(chart, None))
    check("lint, ci/namespaced-values.yaml", lambda: lint_clean(chart, namespaced))
    check("lint, ci/all-values.yaml", lambda: lint_clean(chart, everything))
    check("lint fails: replicaCount \"two\"", lambda: lint_fails(chart, {"replicaCount": "two"}))
    check("lint fails: unknown key", lambda: lint_fails(chart, {"replicas": 3}))

    try:
        defaults = render(chart, None)
    except helm.HelmError as error:
        print(f"FAIL  render defaults: {error}")
        print(f"{checks.passed} passed, {checks.failed + 1} failed")
        return 1
    check("render defaults: Deployment", lambda: check_deployment_defaults(defaults))
    check("render defaults: security context", lambda: check_security(defaults))
    check("render defaults: topology spread and PodDisruptionBudget", lambda: check_spread_and_pdb(defaults))
    check("render defaults: RBAC, cluster scope", lambda: check_cluster_rbac(defaults))
    check("render defaults: standard labels", lambda: check_labels(defaults))
    check("render defaults: CRD from crds/", lambda: check_crd_installed(defaults))
    check("render defaults: NOTES.txt", lambda: check_notes(defaults, "NAMESPACE"))

    try:
        namespaced_render = render(chart, namespaced)
    except helm.HelmError as error:
        namespaced_render = error
    check("render namespaced: RBAC in the watched namespace",
          lambda: check_namespaced(as_rendered(namespaced_render), "shop"))
    check("render namespaced: NOTES.txt", lambda: check_notes(as_rendered(namespaced_render), "shop"))
    check("render namespaced, no watchNamespace: the release namespace",
          lambda: check_namespaced(render(chart, {"rbac": {"scope": "namespaced"}}), NAMESPACE))
    check("render all optional parts", lambda: check_everything_on(render(chart, everything)))
    check("render all optional parts: security context unchanged", lambda: check_security(render(chart, everything)))
    check("render one replica: no PodDisruptionBudget",
          lambda: expect(render(chart, {"replicaCount": 1}).all("PodDisruptionBudget"), [], "PDBs"))
    check("render rbac.create=false: no RBAC",
          lambda: expect([k for k in render(chart, {"rbac": {"create": False}}).kinds() if "Role" in k], [], "RBAC"))

    check("refused: replicaCount \"two\"", lambda: render_fails(chart, {"replicaCount": "two"}, "replicaCount"))
    check("refused: unknown top-level key", lambda: render_fails(chart, {"replicas": 3}, "replicas"))
    check("refused: unknown nested key", lambda: render_fails(chart, {"image": {"tagg": "x"}}, "tagg"))
    check("refused: bad logFormat", lambda: render_fails(chart, {"operator": {"logFormat": "xml"}}, "logFormat"))
    check("refused: bad leaseDuration",
          lambda: render_fails(chart, {"operator": {"leaseDuration": "15 seconds"}}, "leaseDuration"))
    check("refused: watchNamespace in cluster scope",
          lambda: render_fails(chart, {"rbac": {"watchNamespace": "shop"}}, "watchNamespace"))
    check("refused: ServiceMonitor without the metrics Service",
          lambda: render_fails(chart, {"metrics": {"serviceMonitor": {"enabled": True}}}, "enabled"))
    check("render on Kubernetes 1.27, the oldest supported",
          lambda: f"{len(render(chart, None, kube_version='1.27').docs)} objects")
    check("refused: Kubernetes 1.26", lambda: render_fails(chart, None, "kubeVersion", kube_version="1.26"))

    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
