#!/bin/sh
# DEV ONLY: create the Secret the quickstart values expect (relay-secrets) with
# random values, unless it already exists. Production secrets come from your
# secret manager; see docs/deploy.md. Usage: deploy/local/create-dev-secret.sh [namespace]
set -eu
ns="${1:-${RELAY_NAMESPACE:-relay}}"
name="${RELAY_SECRET_NAME:-relay-secrets}"

kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
if kubectl -n "$ns" get secret "$name" >/dev/null 2>&1; then
  echo "secret $ns/$name exists; leaving it alone"
  exit 0
fi
# Hex only: the passwords are spliced into redis:// and postgresql:// URLs.
rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
kubectl -n "$ns" create secret generic "$name" \
  --from-literal=redis-password="$(rand)" \
  --from-literal=postgres-password="$(rand)" \
  --from-literal=internal-token="$(rand)" \
  --from-literal=admin-api-key="relay-admin-$(rand)" \
  --from-literal=anthropic-api-key="sim-$(rand)"
echo "created secret $ns/$name (admin key: kubectl -n $ns get secret $name -o jsonpath='{.data.admin-api-key}' | base64 -d)"
