# Writes the workloads for the references-index row of `make bench` (POSIX awk):
#
#   awk -v out=DIR [-v namespaces=500] -f readers.awk
#
# DIR/readers-NNN.yaml: per namespace 20 Deployments and 40 bare Pods (no controller owner, so
# indexed), each reading Secrets as real workloads do: a Deployment one key by env, one Secret by
# envFrom and one as a volume; a Pod one key by env and one imagePullSecret. 500 namespaces give
# 10,000 Deployments and 20,000 Pods, 70,000 references.

function ns_name(n) { return sprintf("team-%02d", n) }

function deployment(f, ns, i) {
    print "---" > f
    print "apiVersion: apps/v1" > f
    print "kind: Deployment" > f
    print "metadata:" > f
    printf "  name: svc-%03d\n", i > f
    print "  namespace: " ns > f
    print "spec:" > f
    print "  template:" > f
    print "    spec:" > f
    print "      containers:" > f
    print "        - name: app" > f
    print "          image: ghcr.io/acme/app:1.0.0" > f
    print "          env:" > f
    print "            - name: DB_PASSWORD" > f
    printf "              valueFrom: {secretKeyRef: {name: svc-%03d-db, key: password}}\n", i > f
    print "          envFrom:" > f
    printf "            - secretRef: {name: svc-%03d-api}\n", i > f
    print "      volumes:" > f
    print "        - name: tls" > f
    printf "          secret: {secretName: svc-%03d-tls}\n", i > f
}

function pod(f, ns, i) {
    print "---" > f
    print "apiVersion: v1" > f
    print "kind: Pod" > f
    print "metadata:" > f
    printf "  name: task-%03d\n", i > f
    print "  namespace: " ns > f
    print "spec:" > f
    print "  imagePullSecrets: [{name: registry-pull}]" > f
    print "  containers:" > f
    print "    - name: task" > f
    print "      image: ghcr.io/acme/task:1.0.0" > f
    print "      env:" > f
    print "        - name: TOKEN" > f
    printf "          valueFrom: {secretKeyRef: {name: task-%03d-token, key: token}}\n", i > f
}

BEGIN {
    if (namespaces == "") namespaces = 500
    for (n = 0; n < namespaces; n++) {
        f = sprintf("%s/readers-%03d.yaml", out, n)
        for (i = 0; i < 20; i++) deployment(f, ns_name(n), i)
        for (i = 0; i < 40; i++) pod(f, ns_name(n), i)
        close(f)
    }
}
