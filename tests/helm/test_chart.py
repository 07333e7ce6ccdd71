"""Checks of the Helm chart (helm/npvdb) with the real helm, and of the
Dockerfile.

helm (v3.17, from scripts/install-deps.sh) lints and renders the chart with
the default values and with each option turned on (SCENARIOS); every rendered
object is validated against the Kubernetes API schemas by validate.mjs
(kubernetes-models; the ServiceMonitor against the Prometheus Operator's
CRD), types and unknown fields both. The rendered args must be flags that the
real npvdb-server accepts, and the server must start with them and the
rendered Secret. For `lookup` (tokens kept on upgrade) and NOTES.txt, helm
talks to fake_apiserver.py, a read-only stand-in for the API server on
127.0.0.1.

Environment (set by tests/helm/CMakeLists.txt): NPVDB_HELM (helm), NPVDB_NODE
(node), NPVDB_NODE_MODULES (where kubernetes-models is), NPVDB_SERVER
(npvdb-server), NPVDB_CLI (npvdb), NPVDB_SOURCE (repository root).
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import yaml

from fake_apiserver import FakeAPIServer

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("NPVDB_SOURCE", os.path.join(HERE, "..", ".."))
CHART = os.path.join(SOURCE, "helm", "npvdb")
TEMPLATES = os.path.join(CHART, "templates")
HELM = os.environ.get("NPVDB_HELM") or "helm"
NODE = os.environ.get("NPVDB_NODE") or "node"
SERVER = os.environ.get("NPVDB_SERVER")
CLI = os.environ.get("NPVDB_CLI")
RELEASE, NAMESPACE = "db", "vec"


def load_values():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def template_files():
    out = []
    for d, _, names in os.walk(TEMPLATES):
        out += [os.path.join(d, n) for n in names]
    return sorted(out)


def overrides_file(overrides):
    """A values file with {dotted.path: value}; every path must exist in
    values.yaml (a typo in a test must not pass silently)."""
    values = load_values()
    tree = {}
    for dotted, value in (overrides or {}).items():
        parts = dotted.split(".")
        node, have = tree, values
        for p in parts[:-1]:
            have = have[p]  # a KeyError here is a typo in the test
            node = node.setdefault(p, {})
        assert parts[-1] in have, "no value %s in values.yaml" % dotted
        node[parts[-1]] = value
    fd, path = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        json.dump(tree, f)  # JSON is YAML
    return path


def helm(*args, overrides=None, kubeconfig=None, check=False):
    vals = overrides_file(overrides)
    env = dict(os.environ, HELM_CACHE_HOME=tempfile.gettempdir() + "/npvdb-helm-cache",
               HELM_CONFIG_HOME=tempfile.gettempdir() + "/npvdb-helm-config",
               HELM_DATA_HOME=tempfile.gettempdir() + "/npvdb-helm-data",
               KUBECONFIG=kubeconfig or os.devnull)
    try:
        r = subprocess.run([HELM, *args, "-f", vals], capture_output=True,
                           text=True, timeout=60, env=env)
    except FileNotFoundError:
        pytest.fail("helm not found (%s): run scripts/install-deps.sh" % HELM)
    finally:
        os.unlink(vals)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def render_raw(overrides=None, kubeconfig=None):
    """`helm template` (with a cluster to look objects up in when kubeconfig
    is given); CompletedProcess."""
    args = ["template", RELEASE, CHART, "--namespace", NAMESPACE]
    if kubeconfig:
        args.append("--dry-run=server")
    return helm(*args, overrides=overrides, kubeconfig=kubeconfig)


def parse(text):
    objs = {}
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objs, "two objects %s" % (key,)
        objs[key] = doc
    return objs


def render(overrides=None, kubeconfig=None):
    """Rendered manifests as {(kind, name): object}."""
    r = render_raw(overrides, kubeconfig)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)


def notes(overrides=None):
    """NOTES.txt as `helm install --dry-run=server` prints it (helm template
    does not render it), against the fake API server."""
    with FakeAPIServer(namespace=NAMESPACE) as api:
        r = helm("install", RELEASE, CHART, "--namespace", NAMESPACE,
                 "--dry-run=server", "--disable-openapi-validation",
                 overrides=overrides, kubeconfig=api.kubeconfig)
        assert not [q for q in api.requests if " " in q], api.requests
    assert r.returncode == 0, r.stderr
    assert "NOTES:" in r.stdout, r.stdout
    return r.stdout.split("NOTES:", 1)[1]


def statefulset(objs):
    sts = [o for (kind, _), o in objs.items() if kind == "StatefulSet"]
    assert len(sts) == 1
    return sts[0]


def pod_spec(objs):
    return statefulset(objs)["spec"]["template"]["spec"]


def container(objs):
    cs = pod_spec(objs)["containers"]
    assert len(cs) == 1
    return cs[0]


def server_flags():
    """Long flags that `npvdb-server --help` lists."""
    if not SERVER:
        pytest.skip("NPVDB_SERVER not set")
    r = subprocess.run([SERVER, "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    flags = set(re.findall(r"^\s+(--[a-z][a-z-]*)", r.stdout, re.M))
    assert "--listen" in flags and "--data-dir" in flags, r.stdout
    return flags


def server_has_metrics():
    return "--metrics-listen" in server_flags()


def assert_server_accepts(args):
    """The server parses flags in order and stops at --help: a bad flag or
    value exits 2 before it, so exit 0 means every arg was accepted."""
    r = subprocess.run([SERVER] + args + ["--help"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, "npvdb-server %s: %s" % (args, r.stderr)


# ---- lint, and every object against the Kubernetes schemas -----------------

# The option sets the chart is linted, rendered and validated with.
SCENARIOS = {
    "default": {},
    "tls": {"tls.secretName": "npvdb-tls"},
    "mtls": {"tls.secretName": "npvdb-tls",
             "tls.clientCA.secretName": "npvdb-tls", "tls.clientCA.key": "ca.crt"},
    "tokens-existing": {"auth.existingSecret": "team-tokens",
                        "auth.existingSecretKey": "npvdb.txt"},
    "metrics-servicemonitor": {"metrics.serviceMonitor.enabled": True,
                               "metrics.serviceMonitor.labels":
                                   {"release": "kube-prometheus-stack"},
                               "metrics.podAnnotations": False},
    "metrics-off": {"metrics.enabled": False,
                    "metrics.serviceMonitor.enabled": True},
    "persistence": {"persistence.size": "20Gi",
                    "persistence.storageClass": "fast-ssd",
                    "persistence.annotations": {"a.io/b": "c"}},
    "persistence-no-class": {"persistence.storageClass": "-"},
    "persistence-off": {"persistence.enabled": False},
    "replicas-hard-anti-affinity": {"replicaCount": 3,
                                    "podAntiAffinity": "hard"},
    "soft-anti-affinity-pdb-off": {"podAntiAffinity": "soft",
                                   "podDisruptionBudget.enabled": False,
                                   "tests.enabled": False},
    "everything": {
        "tls.secretName": "npvdb-tls", "tls.clientCA.secretName": "ca",
        "auth.existingSecret": "t", "metrics.serviceMonitor.enabled": True,
        "persistence.storageClass": "fast", "replicaCount": 2,
        "server.extraArgs": ["--sync=interval:50"],
        "env": [{"name": "HDF5_USE_FILE_LOCKING", "value": "FALSE"}],
        "tolerations": [{"key": "gpu", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "nodeSelector": {"disk": "ssd"}, "podAnnotations": {"a.io/b": "c"},
        "podLabels": {"team": "search"},
        "imagePullSecrets": [{"name": "regcred"}],
        "service.annotations": {"x.io/y": "z"},
        "serviceAccount.annotations": {"iam.io/role": "r"},
    },
}


def validate(objects):
    """validate.mjs on a list of objects: its per-object results."""
    try:
        r = subprocess.run([NODE, os.path.join(HERE, "validate.mjs")],
                           input=json.dumps(objects), capture_output=True,
                           text=True, timeout=120)
    except FileNotFoundError:
        pytest.fail("node not found (%s): run scripts/install-deps.sh" % NODE)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert len(results) == len(objects)
    return results


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict(scenario):
    r = helm("lint", "--strict", CHART, overrides=SCENARIOS[scenario])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas():
    """All scenarios in one node run (it takes about a second). Nothing is
    skipped: kubernetes-models knows every built-in kind the chart makes,
    and the Prometheus Operator's package knows ServiceMonitor."""
    objects, where = [], []
    for name, overrides in sorted(SCENARIOS.items()):
        for (kind, obj_name), o in render(overrides).items():
            objects.append(o)
            where.append("%s: %s %s" % (name, kind, obj_name))
    kinds = {o["kind"] for o in objects}
    assert kinds == {"StatefulSet", "Service", "ServiceAccount", "Secret",
                     "PodDisruptionBudget", "ServiceMonitor", "Pod"}, kinds
    bad = []
    for w, res in zip(where, validate(objects)):
        assert "skipped" not in res, "%s: %s" % (w, res["skipped"])
        bad += ["%s: %s" % (w, e) for e in res["errors"]]
    assert not bad, "\n".join(bad)


def test_the_validator_catches_wrong_types_unknown_fields_and_missing_fields():
    """validate.mjs is not a yes-machine: a wrong type, a misspelt field
    (at any depth, also in a CRD) and a missing required field are found."""
    sts = statefulset(render())
    sts["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"] = "50051"
    sts["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    sts["spec"]["serviceNmae"] = "x"
    pdb = render()[("PodDisruptionBudget", "db-npvdb")]
    del pdb["spec"]["selector"]
    pdb["spec"]["selector "] = {}
    sm = render({"metrics.serviceMonitor.enabled": True})[
        ("ServiceMonitor", "db-npvdb")]
    sm["spec"]["endpoints"][0]["intervall"] = "1m"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"targetPort": 1}]}}  # port is required
    crd = {"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w"}}
    res = validate([sts, pdb, sm, svc, crd])
    text = [" | ".join(r["errors"]) for r in res]
    assert "containerPort: must be integer" in text[0]
    assert "containers[0].readinesProbe: unknown field" in text[0]
    assert "spec.serviceNmae: unknown field" in text[0]
    assert "spec.selector : unknown field" in text[1]
    assert "endpoints[0].intervall: unknown field" in text[2]
    assert "/spec/ports/0: must have required property port" in text[3]
    assert res[4]["skipped"] == "no schema for example.com/v1 Widget"


# ---- static check of the templates -------------------------------------------

def values_paths(node, prefix=""):
    """Dotted paths of values.yaml down to its leaves (empty maps are leaves)."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from values_paths(v, prefix + "." + k if prefix else k)
    else:
        yield prefix


def test_every_values_reference_exists_and_every_value_is_used():
    """Every .Values.a.b a template, helper or NOTES.txt names is in
    values.yaml; and no value in values.yaml is dead."""
    values = load_values()
    refs = set()
    for path in template_files():
        with open(path) as f:
            refs |= set(re.findall(r"\.Values((?:\.[A-Za-z0-9_]+)+)", f.read()))
    refs = {r[1:] for r in refs}
    assert refs
    for ref in sorted(refs):
        node = values
        for part in ref.split("."):
            assert isinstance(node, dict) and part in node, \
                ".Values.%s is used by a template but not in values.yaml" % ref
            node = node[part]
    for leaf in values_paths(values):
        assert any(leaf == r or leaf.startswith(r + ".") for r in refs), \
            "values.yaml has %s, which no template uses" % leaf


# ---- rendered chart ---------------------------------------------------------

def test_default_render_has_the_objects_and_helm_create_labels():
    objs = render()
    assert set(objs) == {("StatefulSet", "db-npvdb"), ("Service", "db-npvdb"),
                         ("Service", "db-npvdb-headless"),
                         ("Service", "db-npvdb-metrics"),
                         ("ServiceAccount", "db-npvdb"),
                         ("Secret", "db-npvdb-tokens"),
                         ("PodDisruptionBudget", "db-npvdb"),
                         ("Pod", "db-npvdb-test-info")}
    for (kind, name), o in objs.items():
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "npvdb", (kind, name)
        assert labels["app.kubernetes.io/instance"] == "db"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "npvdb-0.2.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
    sts = statefulset(objs)
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "db-npvdb-headless"
    selector = sts["spec"]["selector"]["matchLabels"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for svc in ("db-npvdb", "db-npvdb-headless", "db-npvdb-metrics"):
        assert objs[("Service", svc)]["spec"]["selector"] == selector
    assert container(objs)["image"] == "npvdb:0.1.0"


def test_release_name_containing_chart_name_is_the_fullname():
    objs = render({"fullnameOverride": "vectors"})
    assert ("Service", "vectors-headless") in objs
    assert statefulset(objs)["metadata"]["name"] == "vectors"


def test_container_args_are_flags_the_server_lists_and_accepts():
    """Every arg is a flag of `npvdb-server --help`, and the real binary
    accepts the rendered args with their values."""
    flags = server_flags()
    metrics = {} if server_has_metrics() else {"metrics.enabled": False}
    for overrides in ({}, {"server.sync": "interval:50",
                           "server.graceMs": 1000000,
                           "server.threads": 8,
                           "server.extraArgs": ["--keep-snapshots=3"]},
                      SCENARIOS["mtls"]):
        args = container(render({**overrides, **metrics}))["args"]
        for a in args:
            assert a.startswith("--") and "=" in a, a
            assert a.split("=", 1)[0] in flags, \
                "%s is not a flag of npvdb-server --help" % a
        assert "--listen=0.0.0.0:50051" in args
        assert "--data-dir=/data" in args
        assert not any(a.startswith("--insecure") for a in args)
        assert_server_accepts(args)
    # Large numbers stay integers (helm reads values files as float64).
    args = container(render({"server.graceMs": 1000000,
                             "server.sync": "interval:50"}))["args"]
    assert "--grace-ms=1000000" in args and "--sync=interval:50" in args


def test_metrics_listen_is_on_by_default_with_port_annotations_and_service():
    objs = render()
    c = container(objs)
    assert "--metrics-listen=0.0.0.0:9090" in c["args"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} \
        in c["ports"]
    ann = statefulset(objs)["spec"]["template"]["metadata"]["annotations"]
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                   "prometheus.io/path": "/metrics"}
    svc = objs[("Service", "db-npvdb-metrics")]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9090,
                                     "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    assert not [k for k in objs if k[0] == "ServiceMonitor"]  # optional

    objs = render({"metrics.port": 9400, "podAnnotations": {"a.io/b": "c"}})
    assert "--metrics-listen=0.0.0.0:9400" in container(objs)["args"]
    ann = statefulset(objs)["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "9400" and ann["a.io/b"] == "c"

    objs = render({"metrics.enabled": False, "podAnnotations": {"a.io/b": "c"},
                   "metrics.serviceMonitor.enabled": True})
    c = container(objs)
    assert not [a for a in c["args"] if a.startswith("--metrics")]
    assert [p["name"] for p in c["ports"]] == ["grpc"]
    assert statefulset(objs)["spec"]["template"]["metadata"][
        "annotations"] == {"a.io/b": "c"}
    assert not [k for k in objs if k[0] == "ServiceMonitor"]
    assert ("Service", "db-npvdb-metrics") not in objs


def test_service_monitor_scrapes_the_metrics_service_only():
    objs = render({"metrics.serviceMonitor.enabled": True,
                   "metrics.serviceMonitor.labels": {"release": "prom"},
                   "metrics.serviceMonitor.interval": "15s"})
    sm = objs[("ServiceMonitor", "db-npvdb")]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    sel = sm["spec"]["selector"]["matchLabels"]
    matching = [name for (kind, name), o in objs.items() if kind == "Service"
                and sel.items() <= o["metadata"]["labels"].items()]
    assert matching == ["db-npvdb-metrics"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["vec"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "metrics" and ep["path"] == "/metrics"
    assert ep["interval"] == "15s" and ep["scrapeTimeout"] == "10s"


def test_probes_are_grpc_on_the_service_port():
    """startup, readiness and liveness probes are native gRPC probes on
    the container's grpc port, which both services target."""
    for port in (50051, 7000):
        objs = render({"server.port": port, "service.port": port + 1,
                       "metrics.enabled": False})
        c = container(objs)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": port}
        assert "--listen=0.0.0.0:%d" % port in c["args"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c[probe]
            assert p["grpc"] == {"port": port}, probe
            assert not {"httpGet", "tcpSocket", "exec"} & set(p), probe
        assert c["startupProbe"]["failureThreshold"] * \
            c["startupProbe"]["periodSeconds"] >= 300  # snapshot restore
        svc = objs[("Service", "db-npvdb")]["spec"]
        assert svc["type"] == "ClusterIP"
        assert svc["ports"] == [{"name": "grpc", "port": port + 1,
                                 "targetPort": "grpc", "protocol": "TCP",
                                 "appProtocol": "grpc"}]
        headless = objs[("Service", "db-npvdb-headless")]["spec"]
        assert headless["clusterIP"] == "None"
        assert headless["ports"][0]["port"] == port
        assert headless["ports"][0]["targetPort"] == "grpc"


def grace(objs):
    return pod_spec(objs)["terminationGracePeriodSeconds"]


def test_termination_grace_outlasts_the_server_grace():
    assert grace(render()) * 1000 > load_values()["server"]["graceMs"]
    assert grace(render({"server.graceMs": 60500})) == 61 + 20
    assert grace(render({"terminationGracePeriodSeconds": 45})) == 45
    r = render_raw({"terminationGracePeriodSeconds": 10,
                    "server.graceMs": 10000})
    assert r.returncode != 0
    assert "must be larger than server.graceMs" in r.stderr


def test_non_root_read_only_root_with_writable_data_and_tmp():
    objs = render()
    pod = pod_spec(objs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["fsGroup"]  # the volume writable by the user
    c = container(objs)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert {p: m["name"] for p, m in mounts.items()} == {
        "/data": "data", "/tmp": "tmp", "/etc/npvdb/tokens": "tokens"}
    assert not mounts["/data"].get("readOnly")
    assert not mounts["/tmp"].get("readOnly")
    assert mounts["/etc/npvdb/tokens"]["readOnly"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"requests", "limits"} <= set(c["resources"])


def test_persistence_size_class_and_disabled():
    sts = statefulset(render(SCENARIOS["persistence"]))
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["metadata"]["annotations"] == {"a.io/b": "c"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    vols = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols == {"tmp", "tokens"}  # data comes from the claim

    claim = statefulset(render())["spec"]["volumeClaimTemplates"][0]
    assert "storageClassName" not in claim["spec"]  # the cluster default
    claim = statefulset(render({"persistence.storageClass": "-"}))[
        "spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == ""

    sts = statefulset(render({"persistence.enabled": False}))
    assert "volumeClaimTemplates" not in sts["spec"]
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "emptyDir": {}}


def test_pod_disruption_budget():
    objs = render({"replicaCount": 3})
    pdb = objs[("PodDisruptionBudget", "db-npvdb")]
    assert pdb["apiVersion"] == "policy/v1"
    # One at a time; with one replica a drain can still go ahead.
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {
        "matchLabels": statefulset(objs)["spec"]["selector"]["matchLabels"]}}
    pdb = render({"podDisruptionBudget.maxUnavailable": "50%"})[
        ("PodDisruptionBudget", "db-npvdb")]
    assert pdb["spec"]["maxUnavailable"] == "50%"
    objs = render({"podDisruptionBudget.enabled": False})
    assert not [k for k in objs if k[0] == "PodDisruptionBudget"]


# ---- TLS ---------------------------------------------------------------------

def test_tls_from_a_secret_with_optional_client_ca():
    objs = render(SCENARIOS["tls"])
    c, pod = container(objs), pod_spec(objs)
    assert "--tls-cert=/etc/npvdb/tls/tls.crt" in c["args"]
    assert "--tls-key=/etc/npvdb/tls/tls.key" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--tls-client-ca")]
    assert "--token-file=/etc/npvdb/tokens/tokens" in c["args"]  # still
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/npvdb/tls",
                             "readOnly": True}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "npvdb-tls"
    assert {i["key"] for i in vols["tls"]["secret"]["items"]} == {
        "tls.crt", "tls.key"}
    assert "client-ca" not in vols
    # The kubelet's gRPC probe has no TLS: TCP connects to the same port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"] == {"port": 50051}, probe
        assert "grpc" not in c[probe]

    objs = render({"tls.secretName": "srv", "tls.clientCA.secretName": "cas",
                   "tls.clientCA.key": "bundle.pem"})
    c, pod = container(objs), pod_spec(objs)
    assert "--tls-client-ca=/etc/npvdb/client-ca/bundle.pem" in c["args"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["client-ca"]["secret"]["secretName"] == "cas"
    assert vols["client-ca"]["secret"]["items"] == [
        {"key": "bundle.pem", "path": "bundle.pem"}]
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}[
        "client-ca"] == "/etc/npvdb/client-ca"
    # A client CA without the server's own certificate cannot start.
    r = render_raw({"tls.clientCA.secretName": "cas"})
    assert r.returncode != 0 and "needs tls.secretName" in r.stderr


# ---- tokens ------------------------------------------------------------------

def secret_tokens(objs, name="db-npvdb-tokens"):
    return base64.b64decode(objs[("Secret", name)]["data"]["tokens"]).decode()


def test_pods_get_their_token_file_from_a_secret_never_insecure():
    objs = render()
    c = container(objs)
    assert "--token-file=/etc/npvdb/tokens/tokens" in c["args"]
    assert not any(a.startswith("--insecure") for a in c["args"])
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["tokens"]["secret"]["secretName"] == "db-npvdb-tokens"
    assert vols["tokens"]["secret"]["defaultMode"] == 0o440
    # One write and one read token of 40 random letters and digits.
    text = secret_tokens(objs)
    lines = [ln.split() for ln in text.splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert [role for _, role in lines] == ["write", "read"]
    for tok, _ in lines:
        assert re.fullmatch(r"[A-Za-z0-9]{40}", tok), tok
    assert secret_tokens(render()) != text  # random at each install


def test_upgrades_keep_the_tokens_of_the_secret():
    """helm's lookup, against the fake API server: the Secret in the
    release's namespace keeps its tokens; another namespace's is not ours."""
    kept = base64.b64encode(b"abc write\n").decode()
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db-npvdb-tokens", "namespace": "vec"},
              "data": {"tokens": kept}}
    with FakeAPIServer([secret], namespace=NAMESPACE) as api:
        objs = render(kubeconfig=api.kubeconfig)
        assert "/api/v1/namespaces/vec/secrets/db-npvdb-tokens" in api.requests
    assert objs[("Secret", "db-npvdb-tokens")]["data"]["tokens"] == kept
    secret["metadata"]["namespace"] = "other"
    with FakeAPIServer([secret], namespace=NAMESPACE) as api:
        objs = render(kubeconfig=api.kubeconfig)
        assert "/api/v1/namespaces/vec/secrets/db-npvdb-tokens" in api.requests
    assert secret_tokens(objs) != "abc write\n"


def test_an_existing_secret_replaces_the_generated_one():
    objs = render(SCENARIOS["tokens-existing"])
    assert not [k for k in objs if k[0] == "Secret"]
    assert "--token-file=/etc/npvdb/tokens/npvdb.txt" in container(objs)["args"]
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["tokens"]["secret"]["secretName"] == "team-tokens"
    assert "team-tokens" in notes({"auth.existingSecret": "team-tokens"})


# ---- the real server, started with what the chart renders ---------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d):
    """A throwaway CA, a server certificate for 127.0.0.1 and the CA as the
    client CA, as a kubernetes.io/tls Secret would hold them: {key: path}."""
    def ssl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True,
                       cwd=d, timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ssl("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out",
        "ca.crt", "-subj", "/CN=test CA")
    ssl("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj",
        "/CN=localhost")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "tls.crt")
    return {k: str(d / k) for k in ("tls.crt", "tls.key", "ca.crt")}


HOOK = ("Pod", "db-npvdb-test-info")


def run_hook(objs, port, token_file, certs):
    """Runs the `helm test` Pod's command here: bash, with the image's paths
    (CLI, mounted Secrets) and the Service address replaced by local ones."""
    pod = objs[HOOK]["spec"]
    (c,) = pod["containers"]
    assert c["command"][:2] == ["/bin/bash", "-c"], c["command"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["NPVDB_TOKEN_FILE"].startswith(mounts["tokens"] + "/")
    assert volumes["tokens"]["secretName"] == "db-npvdb-tokens"
    script = c["command"][2]
    assert "/usr/local/bin/npvdb --server db-npvdb:50051 " in script
    script = script.replace("/usr/local/bin/npvdb", CLI).replace(
        "db-npvdb:50051", "127.0.0.1:%d" % port)
    for name, files in (("test-ca", ("ca.crt",)), ("test-client", ("tls.crt", "tls.key"))):
        if name in mounts:
            for f in files:
                path = mounts[name] + "/" + f
                assert path in script and f in [i["path"] for i in volumes[name]["items"]]
                script = script.replace(path, certs[f])
    assert "/etc/npvdb" not in script, script
    run_env = dict(os.environ, NPVDB_TOKEN_FILE=str(token_file))
    run_env.pop("NPVDB_TOKEN", None)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          timeout=60, env=run_env)


@pytest.mark.parametrize("scenario", ["default", "mtls"])
def test_the_server_starts_with_the_rendered_args_and_secret(tmp_path,
                                                             scenario):
    """The chart must keep starting: the real server, run with the rendered
    args (the ports and paths moved into tmp_path, the metrics address to
    loopback), the rendered Secret's token file and, for mtls, certificates
    where the Secrets would be mounted, serves; the `helm test` Pod's
    command, pointed at it, gets SERVING (plaintext); without the token file
    the server refuses, as it would on 0.0.0.0 in the pod."""
    if not SERVER:
        pytest.skip("NPVDB_SERVER not set")
    metrics = server_has_metrics()
    overrides = dict(SCENARIOS[scenario])
    if scenario == "mtls":  # the test Pod's client certificate
        overrides["tests.tls.clientSecretName"] = "npvdb-test-client"
    if not metrics:
        overrides["metrics.enabled"] = False
    objs = render(overrides)
    tokens = tmp_path / "tokens"
    tokens.write_text(secret_tokens(objs))
    certs = make_certs(tmp_path) if scenario == "mtls" else {}
    port, metrics_port = free_port(), free_port()

    def local(a):
        flag, _, value = a.partition("=")
        if flag == "--listen":
            return "--listen=0.0.0.0:%d" % port
        if flag == "--metrics-listen":
            return "--metrics-listen=127.0.0.1:%d" % metrics_port
        if flag == "--data-dir":
            return "--data-dir=" + str(tmp_path / "data")
        if flag == "--token-file":
            return "--token-file=" + str(tokens)
        if flag in ("--tls-cert", "--tls-key", "--tls-client-ca"):
            assert value.startswith("/etc/npvdb/"), a
            return flag + "=" + certs[os.path.basename(value)]
        return a

    args = [local(a) for a in container(objs)["args"]]
    port_file = tmp_path / "port"
    proc = subprocess.Popen([SERVER, *args, "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.05)
        if CLI:
            # The `helm test` Pod's script, its paths moved here: Info with
            # the read token of the token file (over mutual TLS for mtls).
            r = run_hook(objs, port, tokens, certs)
            assert r.returncode == 0, r
            assert "server:      127.0.0.1:%d (version " % port in r.stdout, r
            # A file with no read or write token: it says so.
            empty = tmp_path / "no-tokens"
            empty.write_text("# nothing\n")
            r = run_hook(objs, port, empty, certs)
            assert r.returncode == 1 and "no read or write token" in r.stderr, r
            # A token the server does not know: UNAUTHENTICATED, non-zero.
            wrong = tmp_path / "wrong-tokens"
            wrong.write_text("x" * 40 + " read\n")
            r = run_hook(objs, port, wrong, certs)
            assert r.returncode != 0 and "UNAUTHENTICATED" in r.stderr, r
        if metrics:
            import urllib.request
            with urllib.request.urlopen(
                    "http://127.0.0.1:%d/metrics" % metrics_port,
                    timeout=10) as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "2 tokens from" in err
    if scenario == "mtls":
        assert "(mutual TLS, 2 tokens from" in err, err
    else:
        assert "(plaintext, 2 tokens from" in err, err
        no_tokens = [a for a in args if not a.startswith("--token-file=")]
        r = subprocess.run([SERVER, *no_tokens], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "--insecure" in r.stderr


def test_default_args_turn_on_metrics_that_the_server_serves():
    """The chart passes --metrics-listen by default; the server must know
    the flag (it comes with issue 11's metrics)."""
    if not server_has_metrics():
        pytest.skip("this npvdb-server has no --metrics-listen yet")
    assert_server_accepts(container(render())["args"])


# ---- helm test -------------------------------------------------------------------

def test_helm_test_pod_calls_info_with_the_read_token_through_the_service():
    objs = render()
    pod = objs[HOOK]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"][
        "helm.sh/hook-delete-policy"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (c,) = spec["containers"]
    assert c["image"] == container(objs)["image"]
    assert c["command"][:2] == ["/bin/bash", "-c"]
    script = c["command"][2]
    assert script.rstrip().endswith(
        "exec /usr/local/bin/npvdb --server db-npvdb:50051 --timeout 30 info")
    assert "export NPVDB_TOKEN" in script and "--token" not in script
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tokens", "mountPath": "/etc/npvdb/tokens", "readOnly": True} in \
        c["volumeMounts"]
    # An existing Secret: its name and key.
    c = render(SCENARIOS["tokens-existing"])[HOOK]["spec"]
    assert c["volumes"][0]["secret"]["secretName"] == "team-tokens"
    assert c["containers"][0]["env"] == [
        {"name": "NPVDB_TOKEN_FILE", "value": "/etc/npvdb/tokens/npvdb.txt"}]
    # TLS: trusts ca.crt of the server's Secret (or of tests.tls.caSecretName).
    pod = render({"tls.secretName": "t", "service.port": 443})[HOOK]["spec"]
    assert "--server db-npvdb:443 --timeout 30 --tls-ca /etc/npvdb/test-ca/ca.crt info" in \
        pod["containers"][0]["command"][2]
    ca = [v for v in pod["volumes"] if v["name"] == "test-ca"][0]["secret"]
    assert ca["secretName"] == "t" and ca["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    pod = render({"tls.secretName": "t", "tests.tls.caSecretName": "my-ca",
                  "tests.tls.caKey": "root.pem", "tests.address": "db.example:9"})[HOOK]["spec"]
    assert "--server db.example:9 " in pod["containers"][0]["command"][2]
    ca = [v for v in pod["volumes"] if v["name"] == "test-ca"][0]["secret"]
    assert ca["secretName"] == "my-ca" and ca["items"] == [{"key": "root.pem", "path": "ca.crt"}]
    # Mutual TLS with no client certificate for the Pod: a TCP connect, said.
    c = render(SCENARIOS["mtls"])[HOOK]["spec"]["containers"][0]
    assert "/dev/tcp/db-npvdb/50051" in c["command"][2]
    assert "so Info is not called" in c["command"][2]
    # ... and with one: Info over mutual TLS.
    c = render(dict(SCENARIOS["mtls"], **{"tests.tls.clientSecretName": "cl"}))[HOOK][
        "spec"]["containers"][0]
    assert ("--tls-cert /etc/npvdb/test-client/tls.crt "
            "--tls-key /etc/npvdb/test-client/tls.key info") in c["command"][2]
    assert not [k for k in render({"tests.enabled": False}) if k[0] == "Pod"]


def test_pod_anti_affinity_optional():
    assert "affinity" not in pod_spec(render())
    for mode, key in (("hard", "requiredDuringSchedulingIgnoredDuringExecution"),
                      ("soft", "preferredDuringSchedulingIgnoredDuringExecution")):
        objs = render({"podAntiAffinity": mode, "replicaCount": 3})
        sts = statefulset(objs)
        assert sts["spec"]["replicas"] == 3
        (term,) = sts["spec"]["template"]["spec"]["affinity"][
            "podAntiAffinity"][key]
        term = term.get("podAffinityTerm", term)
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == \
            sts["spec"]["selector"]["matchLabels"]


def test_lists_and_maps_from_values_render_as_yaml():
    objs = render(SCENARIOS["everything"])
    pod_tpl = statefulset(objs)["spec"]["template"]
    pod = pod_tpl["spec"]
    assert container(objs)["env"] == [
        {"name": "HDF5_USE_FILE_LOCKING", "value": "FALSE"}]
    assert pod["tolerations"][0]["key"] == "gpu"
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_tpl["metadata"]["annotations"]["a.io/b"] == "c"
    assert pod_tpl["metadata"]["labels"]["team"] == "search"
    assert objs[("Service", "db-npvdb")]["metadata"]["annotations"] == {
        "x.io/y": "z"}


def test_notes_say_how_to_connect():
    text = notes()
    assert "port-forward svc/db-npvdb 50051:50051" in text
    assert "npvdb --server 127.0.0.1:50051" in text
    assert "get secret db-npvdb-tokens" in text and 'token="TOKEN"' in text
    assert "data-db-npvdb-0" in text
    assert "db-npvdb-metrics" in text and "helm test db -n vec" in text
    text = notes({"replicaCount": 2})
    assert "independent" in text
    assert "db-npvdb-0.db-npvdb-headless.vec.svc:50051" in text
    text = notes(SCENARIOS["mtls"])
    assert "speaks TLS" in text and 'tls_ca="ca.pem"' in text
    assert 'tls_cert="client.pem"' in text
    assert "npvdb --server" not in text


# ---- Dockerfile ---------------------------------------------------------------

def dockerfile():
    with open(os.path.join(SOURCE, "Dockerfile")) as f:
        return f.read()


def runtime_stage(text):
    stages = re.split(r"^FROM\s", text, flags=re.M)
    assert len(stages) >= 3, "a multi-stage Dockerfile"
    return stages[-1]


def test_dockerfile_matches_the_chart():
    values = load_values()
    text = dockerfile()
    final = runtime_stage(text)
    # The bases are build arguments (scripts/build-image.sh passes a local
    # Debian 12); their defaults are Docker Hub's Debian 12 images.
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:12$", text, re.M)
    assert re.search(r"^ARG DEBIAN_SLIM_IMAGE=debian:12-slim$", text, re.M)
    assert final.startswith("${DEBIAN_SLIM_IMAGE}")
    assert re.search(r"^EXPOSE\s+%d\b" % values["server"]["port"], final, re.M)
    assert re.search(r"^VOLUME\s+\[?\"?/data", final, re.M)
    uid = values["podSecurityContext"]["runAsUser"]
    assert re.search(r"--uid\s+%d\b" % uid, final), "image user is the chart's uid"
    assert re.search(r"^USER\s+%d" % uid, final, re.M)
    assert re.search(r"^ENTRYPOINT\s+\[\"/usr/local/bin/npvdb-server\"\]",
                     final, re.M)
    # The helm test Pod runs the CLI from the same image.
    assert re.search(r"^COPY --from=build \S+/npvdb /usr/local/bin/npvdb$",
                     final, re.M)


@pytest.mark.parametrize("binary", ["server", "cli"])
def test_dockerfile_runtime_installs_every_library_the_binaries_link(binary):
    """Each DT_NEEDED library of the built server and CLI maps (dpkg -S) to
    a package that the runtime stage installs; their own dependencies come
    with them."""
    path = SERVER if binary == "server" else CLI
    if not path:
        pytest.skip("NPVDB_SERVER / NPVDB_CLI not set")
    final = runtime_stage(dockerfile())
    m = re.search(r"apt-get install[^\n]*?((?:\\\n|[^\n])*)", final)
    assert m, "runtime stage runs apt-get install"
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+)", m.group(1)))
    dump = subprocess.run(["objdump", "-p", path], capture_output=True,
                          text=True, check=True).stdout
    needed = re.findall(r"^\s*NEEDED\s+(\S+)", dump, re.M)
    if any(n.startswith("libasan") for n in needed):
        pytest.skip("sanitizer build: it links its runtime and every library "
                    "pkg-config names; the image is built without sanitizers")
    assert any("grpc" in n for n in needed)
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True,
                         check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    for lib in needed:
        if lib.startswith(("libc.so", "libm.so", "libpthread", "libdl")):
            continue  # libc6, in every Debian image
        real = os.path.realpath(where[lib])
        owner = subprocess.run(["dpkg", "-S", real], capture_output=True,
                               text=True)
        assert owner.returncode == 0, "no package owns %s" % real
        pkg = owner.stdout.split(":")[0]
        assert pkg in installed, \
            "%s (from %s) is not installed by the Dockerfile's runtime stage" % (
                lib, pkg)
