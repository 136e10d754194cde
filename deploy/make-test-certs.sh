#!/usr/bin/env bash
# make-test-certs.sh DIR — makes a throw-away test PKI for kvstash's TLS with openssl:
#   DIR/ca.pem, ca.key            a test CA
#   DIR/server.pem, server.key    signed by it, for localhost / 127.0.0.1 / ::1 (serverAuth, clientAuth)
#   DIR/client.pem, client.key    signed by it (clientAuth), CN=kvstash-test-client
#   DIR/other-ca.pem, other-ca.key, other-client.pem, other-client.key, other-server.pem, other-server.key
#                                  a second, unrelated CA and a client and a server certificate it
#                                  signed (tests use them to prove that another CA's certificate is
#                                  refused, and that a replaced server certificate is picked up)
#   DIR/expired.pem, expired.key  a server certificate of the test CA whose validity has ended
# Keys are EC P-256 and unencrypted: for tests and the quickstart only, never for production.
# Extra server names: KVSTASH_CERT_SANS="DNS:node1,IP:10.0.0.5" adds them to server.pem.
set -euo pipefail
dir=${1:?usage: make-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077
days=${KVSTASH_CERT_DAYS:-30}
sans="DNS:localhost,IP:127.0.0.1,IP:::1${KVSTASH_CERT_SANS:+,$KVSTASH_CERT_SANS}"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# ca NAME CN: a self-signed CA.
ca() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days "$days" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}

# leaf NAME CN CA EXTENSIONS [DAYS_START DAYS_END]: a certificate of CA for CN.
leaf() {
  local name=$1 cn=$2 issuer=$3 ext=$4
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
  printf '%s\n' "$ext" > "$name.ext"
  if [[ $# -ge 6 ]]; then
    # A validity window in the past: openssl x509 cannot backdate, openssl ca can.
    local db; db=$(mktemp -d)
    touch "$db/index.txt"; echo 01 > "$db/serial"
    cat > "$db/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $db/index.txt
serial = $db/serial
new_certs_dir = $db
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
CNF
    openssl ca -batch -config "$db/ca.cnf" -cert "$issuer.pem" -keyfile "$issuer.key" -in "$name.csr" \
      -startdate "$5" -enddate "$6" -extfile "$name.ext" -notext -out "$name.pem" 2>/dev/null
    rm -rf "$db"
  else
    openssl x509 -req -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial -sha256 \
      -days "$days" -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  fi
  rm -f "$name.csr" "$name.ext"
}

ca ca "kvstash test CA"
leaf server localhost ca "subjectAltName=$sans
extendedKeyUsage=serverAuth,clientAuth"
leaf client kvstash-test-client ca "extendedKeyUsage=clientAuth"
ca other-ca "unrelated test CA"
leaf other-client kvstash-other-client other-ca "extendedKeyUsage=clientAuth"
leaf other-server localhost other-ca "subjectAltName=$sans
extendedKeyUsage=serverAuth,clientAuth"
leaf expired localhost ca "subjectAltName=$sans
extendedKeyUsage=serverAuth" 20200101000000Z 20200102000000Z
rm -f ./*.srl
chmod 0644 ./*.pem
echo "test certificates in $dir: ca.pem server.pem/key client.pem/key other-ca.pem other-client.pem/key other-server.pem/key expired.pem/key"
