"""A read-only stand-in for the Kubernetes API server, on 127.0.0.1, for the
two helm commands that need a cluster: `helm template --dry-run=server` (so
that the chart's `lookup` sees existing objects) and `helm install
--dry-run=server` (which also renders NOTES.txt). It answers what they ask:
/version, API discovery for the kinds the chart makes, GET of an object
(404 unless given), and empty lists (helm's release history). Nothing is
ever written: helm sends no write in a dry run, and a write gets 405.
"""
import http.server
import json
import os
import tempfile
import threading

# group/version -> [(resource, kind, namespaced)]
RESOURCES = {
    "v1": [("secrets", "Secret", True), ("services", "Service", True),
           ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True),
           ("namespaces", "Namespace", False)],
    "apps/v1": [("statefulsets", "StatefulSet", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True)],
}
PLURAL = {(gv, kind): res for gv, items in RESOURCES.items()
          for res, kind, _ in items}


class FakeAPIServer:
    """objects: Kubernetes objects (dicts with apiVersion, kind, metadata
    name and namespace) that GET finds. Use as a context manager; .kubeconfig
    is a kubeconfig file for KUBECONFIG."""

    def __init__(self, objects=(), namespace="default"):
        self.objects = {}
        for o in objects:
            key = self._path(o["apiVersion"], o["kind"],
                             o["metadata"].get("namespace"),
                             o["metadata"]["name"])
            self.objects[key] = o
        self.namespace = namespace
        self.requests = []

    @staticmethod
    def _path(api_version, kind, namespace, name):
        base = "/api/v1" if api_version == "v1" else "/apis/" + api_version
        ns = "/namespaces/%s" % namespace if namespace else ""
        return "%s%s/%s/%s" % (base, ns, PLURAL[(api_version, kind)], name)

    def __enter__(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                fake.requests.append(path)
                body = fake.answer(path)
                if body is None:
                    self.reply(404, {"kind": "Status", "apiVersion": "v1",
                                     "status": "Failure", "reason": "NotFound",
                                     "code": 404})
                else:
                    self.reply(200, body)

            def refuse(self):
                fake.requests.append("%s %s" % (self.command, self.path))
                self.reply(405, {"kind": "Status", "apiVersion": "v1",
                                 "status": "Failure", "code": 405})

            do_POST = do_PUT = do_PATCH = do_DELETE = refuse

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()
        port = self.httpd.server_address[1]
        fd, self.kubeconfig = tempfile.mkstemp(suffix=".kubeconfig")
        with os.fdopen(fd, "w") as f:
            json.dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {
                    "server": "http://127.0.0.1:%d" % port}}],
                "contexts": [{"name": "fake", "context": {
                    "cluster": "fake", "user": "fake",
                    "namespace": self.namespace}}],
                "current-context": "fake",
                "users": [{"name": "fake", "user": {}}],
            }, f)
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        os.unlink(self.kubeconfig)

    def answer(self, path):
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0",
                    "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" in gv:
                    g, v = gv.split("/")
                    ver = {"groupVersion": gv, "version": v}
                    groups.append({"name": g, "versions": [ver],
                                   "preferredVersion": ver})
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": groups}
        for gv, items in RESOURCES.items():
            base = "/api/v1" if gv == "v1" else "/apis/" + gv
            if path == base:
                return {"kind": "APIResourceList", "groupVersion": gv,
                        "resources": [{"name": r, "singularName": k.lower(),
                                       "namespaced": ns, "kind": k,
                                       "verbs": ["get", "list"]}
                                      for r, k, ns in items]}
        if path in self.objects:
            return self.objects[path]
        parts = path.rstrip("/").split("/")
        # .../namespaces/NS/RESOURCE (a list) or .../RESOURCE
        if parts[-1] in {r for items in RESOURCES.values()
                         for r, _, _ in items}:
            return {"kind": "List", "apiVersion": "v1", "metadata": {},
                    "items": []}
        return None
