#!/usr/bin/env bash
# The real node (scripts/cluster): pods run from the images built offline; the Sidelog sidecar
# runs as a native sidecar (an init container with restartPolicy Always and a startupProbe), so
# the app container starts only once it is ready, and the app appends and reads through
# localhost:4380; a ClusterIP Service reaches it by its DNS name (kube-proxy and CoreDNS);
# `kubectl logs` works; nothing addressed to the pod or service ranges left the machine.
source "$(dirname "$0")/lib.sh"
NS=e2e-node
ensure_namespace "$NS"
TAG=$("$ROOT/scripts/images" --list | awk '$1 == "sidelog/sidecar" {print $2}')

assert_ok "the node is Ready" kubectl wait node --all --for=condition=Ready --timeout=30s
kubectl create serviceaccount default -n "$NS" >/dev/null 2>&1 || true

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: sidecar, namespace: $NS}
data:
  sidecar.yaml: |
    service: app
    namespace: $NS
    listen: 127.0.0.1:4380
    healthListen: 0.0.0.0:4381
    dataDir: /var/lib/sidelog
    streams:
      - name: orders
        access: write
        entity:
          stateMachine:
            initial: new
            transitions:
              - {event: OrderCreated, from: [new], to: created}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: $NS, labels: {app: app}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    seccompProfile: {type: RuntimeDefault}
  initContainers:
    - name: sidelog
      image: docker.io/sidelog/sidecar:$TAG
      imagePullPolicy: IfNotPresent
      restartPolicy: Always
      args: [--config, /etc/sidelog/sidecar.yaml]
      ports: [{name: health, containerPort: 4381}]
      startupProbe:
        httpGet: {path: /readyz, port: 4381}
        periodSeconds: 1
        failureThreshold: 30
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      volumeMounts:
        - {name: config, mountPath: /etc/sidelog}
        - {name: data, mountPath: /var/lib/sidelog}
  containers:
    - name: app
      image: docker.io/sidelog/test-app:$TAG
      imagePullPolicy: IfNotPresent
      command: [sh, -c]
      args:
        - |
          curl -fsS -X POST localhost:4380/v1/streams/orders/entities/o-1/events \
            -H 'Content-Type: application/json' \
            -d '{"events":[{"id":"e1","type":"OrderCreated","data":{"customerId":"c-1"}}]}' &&
          curl -fsS localhost:4380/v1/streams/orders/entities/o-1 && echo && echo appended &&
          exec sleep 3600
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
  volumes:
    - {name: config, configMap: {name: sidecar}}
    - {name: data, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: $NS}
spec:
  selector: {app: app}
  ports: [{name: health, port: 80, targetPort: 4381}]
YAML
pass "a pod with the sidecar as a native sidecar applies"
assert_ok "the pod is Ready within 60 s" kubectl wait -n "$NS" pod/app --for=condition=Ready --timeout=60s
assert_eq "the sidecar is an init container that keeps running" "true" \
  "$(kubectl get pod -n "$NS" app -o jsonpath='{.status.initContainerStatuses[0].started}')"
started_sidecar=$(kubectl get pod -n "$NS" app -o jsonpath='{.status.initContainerStatuses[0].state.running.startedAt}')
started_app=$(kubectl get pod -n "$NS" app -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')
assert_ok "the app started after the sidecar ($started_sidecar <= $started_app)" \
  test "$(date -d "$started_sidecar" +%s)" -le "$(date -d "$started_app" +%s)"
wait_until "the app appended through localhost:4380 and read the state back" 30 \
  bash -c "$KUBECTL logs -n $NS app -c app | grep -q appended"
assert_contains "the state is folded by the sidecar in the pod" "$(kubectl logs -n "$NS" app -c app)" '"status":"created"'
assert_contains "kubectl logs of the sidecar" "$(kubectl logs -n "$NS" app -c sidelog)" '"msg"'

echo "# a ClusterIP Service, by its DNS name, from another pod"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $NS}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: client
      image: docker.io/sidelog/test-app:$TAG
      imagePullPolicy: IfNotPresent
      command: [sh, -c, "curl -fsS --max-time 5 http://app.$NS.svc.cluster.local/readyz && curl -fsS --max-time 5 http://app/readyz"]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
YAML
wait_until "the client pod succeeded" 60 bash -c \
  "[ \"\$($KUBECTL get pod -n $NS client -o jsonpath='{.status.phase}')\" = Succeeded ]"
assert_contains "it reached the sidecar's /readyz through the Service" "$(kubectl logs -n "$NS" client)" "ready"

echo "# the guard"
assert_eq "no packet to the pod or service ranges was dropped on its way out" "0" "$("$ROOT/scripts/cluster" guard-drops)"
kubectl delete namespace "$NS" --wait=false >/dev/null
