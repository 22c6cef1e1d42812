# Writes the generated manifests for `make bench` (POSIX awk; run by scripts/bench/generate.sh).
#
#   awk -v out=DIR [-v namespaces=N] [-v inventory_only=1] -f generate.awk
#
# namespaces (50) scales the inventory: 500 gives 100,000 Secrets + 100,000 ConfigMaps.
# inventory_only=1 skips the scan manifests.
#
# DIR/inventory/team-NN.yaml  cluster state for `serve --inventory`: in each of 50 namespaces,
#                             199 Opaque Secrets (svc-000-db .. svc-198-db: username, password,
#                             host), one kubernetes.io/dockerconfigjson Secret (registry-pull) and
#                             200 ConfigMaps (svc-000-config .. svc-199-config): 10,000 + 10,000.
#                             The same shapes as benches/engine.rs builds in memory.
# DIR/scan/team-NN/*.yaml     10,000 manifests, one object per file, for `applyguard scan`: per
#                             namespace 80 Secrets, 60 ConfigMaps and 60 Deployments that
#                             reference them (env secretKeyRef, envFrom, secret and projected
#                             volumes, imagePullSecrets). One Deployment in 20 mistypes a Secret
#                             name and one in 25 uses a placeholder image, so the scan reports
#                             findings as a real one would.

function ns_name(n) { return sprintf("team-%02d", n) }

function secret(f, ns, name) {
    print "---" > f
    print "apiVersion: v1" > f
    print "kind: Secret" > f
    print "type: Opaque" > f
    print "metadata:" > f
    print "  name: " name > f
    print "  namespace: " ns > f
    print "  labels:" > f
    print "    app: " name > f
    print "data:" > f
    print "  username: c2VydmljZQ==" > f
    print "  password: czNjcjN0LXZhbHVl" > f
    print "  host: ZGIuc3Zj" > f
}

function pull_secret(f, ns) {
    print "---" > f
    print "apiVersion: v1" > f
    print "kind: Secret" > f
    print "type: kubernetes.io/dockerconfigjson" > f
    print "metadata:" > f
    print "  name: registry-pull" > f
    print "  namespace: " ns > f
    print "data:" > f
    print "  .dockerconfigjson: eyJhdXRocyI6e319" > f
}

function config_map(f, ns, name) {
    print "---" > f
    print "apiVersion: v1" > f
    print "kind: ConfigMap" > f
    print "metadata:" > f
    print "  name: " name > f
    print "  namespace: " ns > f
    print "  labels:" > f
    print "    app: " name > f
    print "data:" > f
    print "  LOG_LEVEL: info" > f
    print "  KAFKA_BOOTSTRAP_SERVERS: \"kafka-0.kafka." ns ".svc:9093,kafka-1.kafka." ns ".svc:9093\"" > f
    print "  KAFKA_SECURITY_PROTOCOL: SASL_SSL" > f
    print "  application.properties: |" > f
    print "    server.port=8080" > f
    print "    spring.kafka.bootstrap-servers=kafka-0.kafka." ns ".svc:9093" > f
    print "    spring.kafka.properties.security.protocol=SASL_SSL" > f
    print "    management.endpoints.web.exposure.include=health" > f
}

function namespace_doc(f, ns) {
    print "---" > f
    print "apiVersion: v1" > f
    print "kind: Namespace" > f
    print "metadata:" > f
    print "  name: " ns > f
    print "  labels:" > f
    print "    team: " ns > f
}

function deployment(f, ns, j, db, image) {
    print "apiVersion: apps/v1" > f
    print "kind: Deployment" > f
    print "metadata:" > f
    printf "  name: app-%03d\n", j > f
    print "  namespace: " ns > f
    print "spec:" > f
    print "  replicas: 2" > f
    print "  selector:" > f
    printf "    matchLabels: {app: app-%03d}\n", j > f
    print "  template:" > f
    print "    metadata:" > f
    printf "      labels: {app: app-%03d}\n", j > f
    print "    spec:" > f
    print "      securityContext: {runAsNonRoot: true, runAsUser: 10001}" > f
    print "      imagePullSecrets: [{name: registry-pull}]" > f
    print "      containers:" > f
    print "        - name: app" > f
    print "          image: " image > f
    print "          ports: [{containerPort: 8080, name: http}]" > f
    print "          env:" > f
    print "            - {name: LOG_FORMAT, value: json}" > f
    print "            - name: DB_USER" > f
    print "              valueFrom: {secretKeyRef: {name: " db ", key: username}}" > f
    print "            - name: DB_PASSWORD" > f
    print "              valueFrom: {secretKeyRef: {name: " db ", key: password}}" > f
    print "            - name: SPRING_KAFKA_BOOTSTRAP_SERVERS" > f
    printf "              valueFrom: {configMapKeyRef: {name: svc-%03d-config, key: KAFKA_BOOTSTRAP_SERVERS}}\n", j > f
    print "            - {name: SPRING_KAFKA_PROPERTIES_SECURITY_PROTOCOL, value: SASL_SSL}" > f
    print "          envFrom:" > f
    printf "            - configMapRef: {name: svc-%03d-config}\n", j > f
    printf "            - secretRef: {name: svc-%03d-db}\n", j + 1 > f
    print "          resources: {requests: {cpu: 100m, memory: 128Mi}, limits: {memory: 256Mi}}" > f
    print "          volumeMounts: [{name: tls, mountPath: /etc/tls, readOnly: true}]" > f
    print "      volumes:" > f
    print "        - name: tls" > f
    printf "          secret: {secretName: svc-%03d-db, items: [{key: host, path: host}]}\n", j + 2 > f
    print "        - name: bundle" > f
    print "          projected:" > f
    print "            sources:" > f
    printf "              - secret: {name: svc-%03d-db, items: [{key: password, path: password}]}\n", j + 3 > f
    printf "              - configMap: {name: svc-%03d-config}\n", j > f
}

BEGIN {
    if (out == "") { print "generate.awk: -v out=DIR is required" > "/dev/stderr"; exit 2 }
    if (namespaces == "") namespaces = 50
    for (n = 0; n < namespaces; n++) {
        ns = ns_name(n)
        f = out "/inventory/" ns ".yaml"
        namespace_doc(f, ns)
        for (i = 0; i < 199; i++) secret(f, ns, sprintf("svc-%03d-db", i))
        pull_secret(f, ns)
        for (i = 0; i < 200; i++) config_map(f, ns, sprintf("svc-%03d-config", i))
        close(f)
        if (inventory_only) continue

        dir = out "/scan/" ns
        for (i = 0; i < 79; i++) {
            f = sprintf("%s/secret-%03d.yaml", dir, i)
            secret(f, ns, sprintf("svc-%03d-db", i))
            close(f)
        }
        f = dir "/secret-registry-pull.yaml"
        pull_secret(f, ns)
        close(f)
        for (i = 0; i < 60; i++) {
            f = sprintf("%s/configmap-%03d.yaml", dir, i)
            config_map(f, ns, sprintf("svc-%03d-config", i))
            close(f)
        }
        for (j = 0; j < 60; j++) {
            f = sprintf("%s/deployment-%03d.yaml", dir, j)
            db = sprintf("svc-%03d-db", j)
            if (j % 20 == 19) db = sprintf("svc-%03d-bd", j)
            image = sprintf("ghcr.io/acme/app-%03d:1.%d.0", j, j % 7)
            if (j % 25 == 3) image = "ghcr.io/your-org/app:latest"
            deployment(f, ns, j, db, image)
            close(f)
        }
    }
}
