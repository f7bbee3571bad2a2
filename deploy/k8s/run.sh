#!/usr/bin/env bash
# Runs deploy/k8s/anonymize-job.yaml: the Indexed anonymize Job, then, once it is complete, the
# merge Job (Kubernetes has no dependency between Jobs). Needs the claim and the Secret the YAML
# names. usage: deploy/k8s/run.sh [TIMEOUT, default 48h]
set -euo pipefail
yaml="$(cd "$(dirname "$0")" && pwd)/anonymize-job.yaml"
kubectl apply -f "$yaml" -l step=anonymize
kubectl wait --for=condition=complete --timeout="${1:-48h}" job/boomerang-anonymize
kubectl apply -f "$yaml" -l step=merge
kubectl wait --for=condition=complete --timeout=1h job/boomerang-merge
