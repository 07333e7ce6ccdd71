#!/usr/bin/env bash
# Installs every Debian package npvdb needs to build, test and benchmark.
# Idempotent: packages already present are skipped by apt; `apt-get update` runs
# only when some package is missing.
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
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
