"""Checks of the Helm chart (helm/npvdb) and the Dockerfile, without helm.

Debian 12 has no helm binary and this machine has no network, so the chart is
rendered by render.go (Go's text/template, the engine helm uses, with the few
Sprig functions the chart needs; see its header for what it is not). On top of
the rendering, static checks that need no renderer at all: every template is
YAML once its actions are replaced by placeholders, and every .Values path a
template names exists in values.yaml.

Environment (set by tests/helm/CMakeLists.txt): NPVDB_HELM_RENDER (render
binary), NPVDB_SERVER (npvdb-server), NPVDB_SOURCE (repository root).
"""
import base64
import copy
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest
import yaml

SOURCE = os.environ.get(
    "NPVDB_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(SOURCE, "helm", "npvdb")
TEMPLATES = os.path.join(CHART, "templates")
RENDER = os.environ.get("NPVDB_HELM_RENDER")
SERVER = os.environ.get("NPVDB_SERVER")


def load_values():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def template_files(pred=lambda name: True):
    return sorted(os.path.join(TEMPLATES, n) for n in os.listdir(TEMPLATES)
                  if pred(n))


def set_path(values, dotted, value):
    node = values
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]  # a KeyError here is a typo in the test
    assert parts[-1] in node, "no value %s in values.yaml" % dotted
    node[parts[-1]] = value


def render_raw(overrides=None, notes=False, existing=None):
    """Renders with values.yaml plus {dotted.path: value}; CompletedProcess.
    existing: Kubernetes objects that lookup finds (the cluster's)."""
    if not RENDER:
        pytest.skip("NPVDB_HELM_RENDER not set (render.go not built)")
    values = copy.deepcopy(load_values())
    for k, v in (overrides or {}).items():
        set_path(values, k, v)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(values, f)
    try:
        cmd = [RENDER, "-chart", CHART, "-values", f.name,
               "-release", "db", "-namespace", "vec"]
        if existing is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".json",
                                             delete=False) as g:
                json.dump(existing, g)
            cmd += ["-existing", g.name]
        return subprocess.run(cmd + (["-notes"] if notes else []),
                              capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(f.name)
        if existing is not None:
            os.unlink(g.name)


def render(overrides=None, existing=None):
    """Rendered manifests as {(kind, name): object}."""
    r = render_raw(overrides, existing=existing)
    assert r.returncode == 0, r.stderr
    objs = {}
    for doc in yaml.safe_load_all(r.stdout):
        if doc is None:
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objs, "two objects %s" % (key,)
        objs[key] = doc
    return objs


def statefulset(objs):
    sts = [o for (kind, _), o in objs.items() if kind == "StatefulSet"]
    assert len(sts) == 1
    return sts[0]


def container(objs):
    cs = statefulset(objs)["spec"]["template"]["spec"]["containers"]
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


def assert_server_accepts(args):
    """The server parses flags in order and stops at --help: a bad flag or
    value exits 2 before it, so exit 0 means every arg was accepted."""
    r = subprocess.run([SERVER] + args + ["--help"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, "npvdb-server %s: %s" % (args, r.stderr)


# ---- static checks (no renderer) ------------------------------------------

ACTION = re.compile(r"{{-?.*?-?}}", re.S)


def test_templates_are_yaml_with_actions_as_placeholders():
    """(a) Lines that hold only an action (if/end/with/range, include|nindent,
    toYaml|nindent) are dropped, the parent key then reads as null; inline
    actions become the scalar X. What is left must be YAML whose documents are
    Kubernetes objects."""
    files = template_files(lambda n: n.endswith(".yaml"))
    assert len(files) >= 3
    for path in files:
        with open(path) as f:
            text = re.sub(r"{{-?\s*/\*.*?\*/\s*-?}}", "", f.read(), flags=re.S)
        lines = [ln for ln in text.splitlines()
                 if not ACTION.fullmatch(ln.strip())]
        skeleton = ACTION.sub("X", "\n".join(lines))
        try:
            docs = [d for d in yaml.safe_load_all(skeleton) if d is not None]
        except yaml.YAMLError as e:
            pytest.fail("%s is not YAML with placeholders: %s" % (path, e))
        assert docs, path
        for d in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(d), path


def values_paths(node, prefix=""):
    """Dotted paths of values.yaml down to its leaves (empty maps are leaves)."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from values_paths(v, prefix + "." + k if prefix else k)
    else:
        yield prefix


def test_every_values_reference_exists_and_every_value_is_used():
    """(b) Every .Values.a.b a template, helper or NOTES.txt names is in
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
                         ("ServiceAccount", "db-npvdb"),
                         ("Secret", "db-npvdb-tokens")}
    for (kind, name), o in objs.items():
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "npvdb", (kind, name)
        assert labels["app.kubernetes.io/instance"] == "db"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "npvdb-0.1.0"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
    sts = statefulset(objs)
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == "db-npvdb-headless"
    selector = sts["spec"]["selector"]["matchLabels"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for svc in ("db-npvdb", "db-npvdb-headless"):
        assert objs[("Service", svc)]["spec"]["selector"] == selector
    assert container(objs)["image"] == "npvdb:0.1.0"


def test_release_name_containing_chart_name_is_the_fullname():
    r = render_raw({"fullnameOverride": "vectors"})
    assert r.returncode == 0, r.stderr
    assert "name: vectors-headless" in r.stdout


def test_container_args_are_flags_the_server_lists_and_accepts():
    """(c) Every arg is a flag of `npvdb-server --help`, and the real binary
    accepts the rendered args with their values."""
    flags = server_flags()
    for overrides in ({}, {"server.sync": "interval:50",
                           "server.graceMs": 1000000,
                           "server.threads": 8,
                           "server.extraArgs": ["--keep-snapshots=3"]}):
        args = container(render(overrides))["args"]
        for a in args:
            assert a.startswith("--") and "=" in a, a
            assert a.split("=", 1)[0] in flags, \
                "%s is not a flag of npvdb-server --help" % a
        assert "--listen=0.0.0.0:50051" in args
        assert "--data-dir=/data" in args
        assert_server_accepts(args)
    # Large numbers stay integers (helm reads values files as float64).
    assert "--grace-ms=1000000" in args and "--sync=interval:50" in args


def test_probes_are_grpc_on_the_service_port():
    """(d) startup, readiness and liveness probes are native gRPC probes on
    the container's grpc port, which both services target."""
    for port in (50051, 7000):
        objs = render({"server.port": port, "service.port": port + 1})
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
    return statefulset(objs)["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]


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
    pod = statefulset(objs)["spec"]["template"]["spec"]
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
    sts = statefulset(render({"persistence.size": "20Gi",
                              "persistence.storageClass": "fast-ssd"}))
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
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


# ---- tokens ------------------------------------------------------------------

def secret_tokens(objs, name="db-npvdb-tokens"):
    return base64.b64decode(objs[("Secret", name)]["data"]["tokens"]).decode()


def test_pods_get_their_token_file_from_a_secret_never_insecure():
    objs = render()
    c = container(objs)
    assert "--token-file=/etc/npvdb/tokens/tokens" in c["args"]
    assert not any(a.startswith("--insecure") for a in c["args"])
    pod = statefulset(objs)["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
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
    kept = base64.b64encode(b"abc write\n").decode()
    cluster = [{"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db-npvdb-tokens", "namespace": "vec"},
                "data": {"tokens": kept}}]
    objs = render(existing=cluster)
    assert objs[("Secret", "db-npvdb-tokens")]["data"]["tokens"] == kept
    # Another namespace's Secret of that name is not ours.
    cluster[0]["metadata"]["namespace"] = "other"
    assert secret_tokens(render(existing=cluster)) != "abc write\n"


def test_an_existing_secret_replaces_the_generated_one():
    objs = render({"auth.existingSecret": "team-tokens",
                   "auth.existingSecretKey": "npvdb.txt"})
    assert not [k for k in objs if k[0] == "Secret"]
    assert "--token-file=/etc/npvdb/tokens/npvdb.txt" in container(objs)["args"]
    pod = statefulset(objs)["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["tokens"]["secret"]["secretName"] == "team-tokens"
    r = render_raw({"auth.existingSecret": "team-tokens"}, notes=True)
    assert r.returncode == 0 and "team-tokens" in r.stdout


def test_the_server_starts_with_the_rendered_args_and_secret(tmp_path):
    """The chart must keep starting: the real server, run with the rendered
    args (the port and paths moved into tmp_path) and the rendered Secret's
    token file, serves; without the token file it refuses, as it would on
    0.0.0.0 in the pod."""
    if not SERVER:
        pytest.skip("NPVDB_SERVER not set")
    objs = render()
    tokens = tmp_path / "tokens"
    tokens.write_text(secret_tokens(objs))

    def local(a):
        if a.startswith("--listen="):
            return "--listen=0.0.0.0:0"
        if a.startswith("--data-dir="):
            return "--data-dir=" + str(tmp_path / "data")
        if a.startswith("--token-file="):
            return "--token-file=" + str(tokens)
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
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "2 tokens from" in err
    no_tokens = [a for a in args if not a.startswith("--token-file=")]
    r = subprocess.run([SERVER, *no_tokens], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "--insecure" in r.stderr


def test_pod_anti_affinity_optional():
    pod = statefulset(render())["spec"]["template"]["spec"]
    assert "affinity" not in pod
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
    objs = render({
        "env": [{"name": "HDF5_USE_FILE_LOCKING", "value": "FALSE"}],
        "tolerations": [{"key": "gpu", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "nodeSelector": {"disk": "ssd"},
        "podAnnotations": {"a.io/b": "c"},
        "podLabels": {"team": "search"},
        "imagePullSecrets": [{"name": "regcred"}],
    })
    pod_tpl = statefulset(objs)["spec"]["template"]
    pod = pod_tpl["spec"]
    assert container(objs)["env"] == [
        {"name": "HDF5_USE_FILE_LOCKING", "value": "FALSE"}]
    assert pod["tolerations"][0]["key"] == "gpu"
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_tpl["metadata"]["annotations"] == {"a.io/b": "c"}
    assert pod_tpl["metadata"]["labels"]["team"] == "search"


def test_notes_say_how_to_connect():
    r = render_raw(notes=True)
    assert r.returncode == 0, r.stderr
    assert "port-forward svc/db-npvdb 50051:50051" in r.stdout
    assert "npvdb --server 127.0.0.1:50051" in r.stdout
    assert "get secret db-npvdb-tokens" in r.stdout and 'token="TOKEN"' in r.stdout
    assert "data-db-npvdb-0" in r.stdout
    r = render_raw({"replicaCount": 2}, notes=True)
    assert "independent" in r.stdout
    assert "db-npvdb-0.db-npvdb-headless.vec.svc:50051" in r.stdout


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
    final = runtime_stage(dockerfile())
    assert final.startswith("debian:12-slim")
    assert re.search(r"^EXPOSE\s+%d\b" % values["server"]["port"], final, re.M)
    assert re.search(r"^VOLUME\s+\[?\"?/data", final, re.M)
    uid = values["podSecurityContext"]["runAsUser"]
    assert re.search(r"--uid\s+%d\b" % uid, final), "image user is the chart's uid"
    assert re.search(r"^USER\s+%d" % uid, final, re.M)
    assert re.search(r"^ENTRYPOINT\s+\[\"/usr/local/bin/npvdb-server\"\]",
                     final, re.M)


def test_dockerfile_runtime_installs_every_library_the_server_links():
    """Each DT_NEEDED library of the built server maps (dpkg -S) to a package
    that the runtime stage installs; their own dependencies come with them."""
    if not SERVER:
        pytest.skip("NPVDB_SERVER not set")
    final = runtime_stage(dockerfile())
    m = re.search(r"apt-get install[^\n]*?((?:\\\n|[^\n])*)", final)
    assert m, "runtime stage runs apt-get install"
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+)", m.group(1)))
    dump = subprocess.run(["objdump", "-p", SERVER], capture_output=True,
                          text=True, check=True).stdout
    needed = re.findall(r"^\s*NEEDED\s+(\S+)", dump, re.M)
    if any(n.startswith("libasan") for n in needed):
        pytest.skip("sanitizer build: it links its runtime and every library "
                    "pkg-config names; the image is built without sanitizers")
    assert "libgrpc.so.29" in needed or any("grpc" in n for n in needed)
    ldd = subprocess.run(["ldd", SERVER], capture_output=True, text=True,
                         check=True).stdout
    where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    for lib in needed:
        if lib.startswith(("libc.so", "libm.so", "libpthread", "libdl")):
            continue  # libc6, in every Debian image
        if lib.startswith(("libasan", "libubsan")):
            continue  # sanitizer builds only
        real = os.path.realpath(where[lib])
        owner = subprocess.run(["dpkg", "-S", real], capture_output=True,
                               text=True)
        assert owner.returncode == 0, "no package owns %s" % real
        pkg = owner.stdout.split(":")[0]
        assert pkg in installed, \
            "%s (from %s) is not installed by the Dockerfile's runtime stage" % (
                lib, pkg)
