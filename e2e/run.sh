#!/usr/bin/env bash
# The full flow on kind: build the operator's image, install it with the Helm
# chart, start PostgreSQL in the cluster, then run the ship tests
# (e2e/tests/ship.rs) against the operator as deployed. See "Full flow on
# kind" in e2e/README.md.
#
#   e2e/run.sh
#
# SCHEMAOP_E2E_REUSE=1  use the kind cluster schemaop-e2e if it exists (the
#                       image is rebuilt and reloaded, the release upgraded
#                       and restarted) instead of creating it
# SCHEMAOP_E2E_KEEP=1   keep the cluster at the end instead of deleting it
#
# Extra arguments go to the test binary, e.g. a test name to run only it:
#   e2e/run.sh pods_wait_for_their_schema
set -euo pipefail

readonly CLUSTER=schemaop-e2e
readonly IMAGE=schemaop:e2e
readonly RELEASE=schemaop
readonly OPERATOR_NAMESPACE=schemaop-system
readonly APP_NAMESPACE=schemaop-e2e-app
# A kubeconfig of its own: the run never changes your current context, and
# the tests cannot reach any cluster but this one.
KUBECONFIG="${TMPDIR:-/tmp}/${CLUSTER}.kubeconfig"
export KUBECONFIG

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    printf '\n==> %s\n' "$*" >&2
}

fail() {
    printf 'e2e/run.sh: %s\n' "$*" >&2
    exit 1
}

# --- Prerequisites ----------------------------------------------------------

# Where to get each tool. (No associative array: macOS ships bash 3.2.)
install_hint() {
    case "$1" in
        kind) echo "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" ;;
        docker) echo "https://docs.docker.com/engine/install/ (the engine must run: kind's nodes are containers)" ;;
        helm) echo "https://helm.sh/docs/intro/install/" ;;
        kubectl) echo "https://kubernetes.io/docs/tasks/tools/" ;;
        cargo) echo "https://rustup.rs" ;;
    esac
}
missing=()
for tool in kind docker helm kubectl cargo; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]} > 0)); then
    {
        printf 'e2e/run.sh: missing prerequisites: %s\n' "${missing[*]}"
        for tool in "${missing[@]}"; do
            printf '  %-8s %s\n' "$tool:" "$(install_hint "$tool")"
        done
    } >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    fail "docker is installed but its engine does not answer (\`docker info\` fails); start it, or check that this user may use it"
fi

# Compile the tests first: a build error should not cost a cluster.
step "Building the ship tests"
cargo test -p schemaop-e2e --test ship --no-run

# --- The cluster ------------------------------------------------------------

cluster_exists() {
    kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null
}

have_cluster=0
finish() {
    local status=$?
    if ((status != 0 && have_cluster == 1)); then
        step "Failed; what the cluster looked like"
        kubectl get pods --all-namespaces -o wide || true
        kubectl -n "$OPERATOR_NAMESPACE" logs -l "app.kubernetes.io/instance=$RELEASE" \
            --all-containers --prefix --tail=200 || true
    fi
    if ((have_cluster == 1)); then
        if [[ "${SCHEMAOP_E2E_KEEP:-}" == 1 ]]; then
            step "Keeping the cluster $CLUSTER"
            printf 'export KUBECONFIG=%s   # then kubectl as usual\n' "$KUBECONFIG" >&2
            printf 'kind delete cluster --name %s   # when done\n' "$CLUSTER" >&2
        else
            step "Deleting the cluster $CLUSTER (SCHEMAOP_E2E_KEEP=1 keeps it)"
            kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" || true
        fi
    fi
    exit "$status"
}
trap finish EXIT

if [[ "${SCHEMAOP_E2E_REUSE:-}" == 1 ]] && cluster_exists; then
    step "Reusing the kind cluster $CLUSTER"
    kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
    have_cluster=1
else
    if cluster_exists; then
        fail "a kind cluster named $CLUSTER exists already; delete it (kind delete cluster --name $CLUSTER) or set SCHEMAOP_E2E_REUSE=1 to use it"
    fi
    step "Creating the kind cluster $CLUSTER"
    have_cluster=1
    kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s
fi
kubectl cluster-info

# --- The operator -----------------------------------------------------------

step "Building the image $IMAGE"
docker build -t "$IMAGE" .

step "Loading $IMAGE into the cluster's nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# The spec.job test runs this Alembic app's own image as a Job.
ALEMBIC_IMAGE=schemaop-alembic-app:e2e
step "Building the Alembic app's image $ALEMBIC_IMAGE"
docker build -t "$ALEMBIC_IMAGE" -f e2e/manifests/alembic-app.Dockerfile .
kind load docker-image "$ALEMBIC_IMAGE" --name "$CLUSTER"

if helm status "$RELEASE" --namespace "$OPERATOR_NAMESPACE" >/dev/null 2>&1; then
    step "Upgrading the release $RELEASE (reused cluster)"
    # Helm installs CRDs on the first install only.
    kubectl apply --server-side --force-conflicts -f charts/schemaop/crds/schemamigration.yaml
    helm upgrade "$RELEASE" charts/schemaop --namespace "$OPERATOR_NAMESPACE" \
        --set image.repository=schemaop --set image.tag=e2e --set image.pullPolicy=Never --wait
    # Same tag, new image: only new pods run it.
    kubectl -n "$OPERATOR_NAMESPACE" rollout restart "deployment/$RELEASE"
    kubectl -n "$OPERATOR_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=300s
else
    step "Installing the chart"
    helm install "$RELEASE" charts/schemaop --namespace "$OPERATOR_NAMESPACE" --create-namespace \
        --set image.repository=schemaop --set image.tag=e2e --set image.pullPolicy=Never --wait
fi
kubectl -n "$OPERATOR_NAMESPACE" get deployment,pods,lease

# --- PostgreSQL -------------------------------------------------------------

step "Starting PostgreSQL in $APP_NAMESPACE"
kubectl apply -f e2e/manifests/postgres.yaml
kubectl -n "$APP_NAMESPACE" rollout status deployment/postgres --timeout=300s

# --- The tests --------------------------------------------------------------

step "Running the ship tests"
# SCHEMAOP_E2E=require: no cluster is a failure, not a skip.
# SCHEMAOP_E2E_OPERATOR=require: so is a missing operator or PostgreSQL.
SCHEMAOP_E2E=require SCHEMAOP_E2E_OPERATOR=require \
    cargo test -p schemaop-e2e --test ship -- --ignored --test-threads=1 --nocapture "$@"

step "The ship tests passed"
