#!/bin/sh
# make_pki.sh DIR -- a throwaway PKI for the security tests, made at test time
# (no key is ever committed): in DIR,
#   ca.pem ca.key              a CA
#   server.pem server.key      signed by ca, for localhost and 127.0.0.1
#   client.pem client.key      signed by ca, a client certificate (mutual TLS)
#   other-ca.pem other-ca.key  another CA, trusted by nobody
#   stranger.pem stranger.key  a client certificate signed by other-ca
# EC P-256 keys, valid two days. Exits non-zero (openssl's message on
# stderr) when anything fails.
set -eu
d=${1:?usage: make_pki.sh DIR}
mkdir -p "$d"
cd "$d"
umask 077
: >openssl.log

# openssl ARGS: its chatter goes to openssl.log, shown when it fails.
ossl() {
    openssl "$@" 2>>openssl.log || {
        cat openssl.log >&2
        exit 1
    }
}

ca() {
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 2 -keyout "$1.key" -out "$1.pem" -subj "/CN=npvdb test $1"
}

# leaf NAME CA EXTENSIONS
leaf() {
    printf '%b' "$3" >"$1.ext"
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
    ossl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
        -CAcreateserial -days 2 -out "$1.pem" -extfile "$1.ext"
}

ca ca
ca other-ca
leaf server ca 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
leaf client ca 'extendedKeyUsage=clientAuth\n'
leaf stranger other-ca 'extendedKeyUsage=clientAuth\n'
chmod 644 ./*.pem
