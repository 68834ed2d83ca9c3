"""Validates boxoffice's Kubernetes manifests, for scripts/check-kubernetes.

    python validate.py --rendered R.yaml --secrets secret.example.yaml \
        --kustomization kustomization.yaml --env-example .env.example \
        --routes-out routes.json --summary-out summary.json --versions 1.30.0 1.37.0

1. Every document of the rendered kustomization and of secret.example.yaml against the
   Kubernetes JSON schemas of each version (kubernetes-validate, strict: unknown fields
   fail). HTTPRoutes, which those schemas do not have, are written to --routes-out for
   gateway-api.mjs; any other kind without a schema fails.
2. Rules of our own, which a schema cannot state:
   - every container of a Deployment or Job (init containers too) has CPU and memory
     requests and limits; every Deployment's containers have a liveness probe on
     /health/live and a readiness probe on /health/ready, on a port they declare;
   - the boxoffice containers set only variables the binaries read (.env.example lists
     every one; bench/tests/env_example.rs checks it against their --help), and a
     service listens (its *_ADDR) on the port it declares and Prometheus scrapes;
   - every ConfigMap and Secret a pod reads exists (the Secrets in secret.example.yaml,
     with the keys read), every Service, PodDisruptionBudget, HorizontalPodAutoscaler,
     NetworkPolicy and HTTPRoute reaches what it names;
   - a Deployment an HPA scales sets no `replicas`; the projector runs one replica per
     partition of the topic (KAFKA_TOPIC_PARTITIONS), the notifier at most as many.
Exits 1 when anything fails.
"""

import argparse
import functools
import json
import re
import sys

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml

# kubernetes-validate reads its schema files again for every document: once is enough.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

BINARIES = {"command-api", "projector", "query-api", "payment-gateway", "notifier"}
SERVICE_ADDR = {
    "command-api": "COMMAND_API_ADDR",
    "query-api": "QUERY_API_ADDR",
    "projector": "PROJECTOR_ADDR",
    "payment-gateway": "PAYMENT_GATEWAY_ADDR",
    "notifier": "NOTIFIER_ADDR",
}

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def load(path):
    docs = []
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc is not None:
                docs.append(doc)
    return docs


def name_of(doc):
    return f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"


def env_names_from_example(path):
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=", line)
            if m:
                names.add(m.group(1))
    return names


def boxoffice_image(kustomization):
    for image in kustomization.get("images", []):
        if image.get("name") == "boxoffice":
            return f"{image.get('newName', 'boxoffice')}:{image.get('newTag', 'latest')}"
    return "boxoffice"


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def selector_matches(selector, labels):
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_schemas(docs, versions):
    routes = []
    for where, doc in docs:
        if doc.get("apiVersion", "").startswith("gateway.networking.k8s.io/"):
            routes.append({"where": where, "doc": doc})
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = "/".join(str(p) for p in err.path)
                fail(where, f"Kubernetes {version} (strict): {err.message} (at /{path})")
            except kubernetes_validate.SchemaNotFoundError:
                fail(where, f"no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")
    return routes


def check_containers(where, doc, env_names, image, configmaps, secrets):
    spec = pod_spec(doc)
    annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
    containers = spec.get("containers", [])
    for init in (False, True):
        for c in spec.get("initContainers" if init else "containers", []) or []:
            cw = f"{where} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (res.get(part) or {}):
                        fail(cw, f"no {what} in resources.{part}")
            # What the container reads: variables, ConfigMaps, Secrets.
            set_names = [e["name"] for e in c.get("env", []) or []]
            for source in c.get("envFrom", []) or []:
                ref = source.get("configMapRef") or source.get("secretRef")
                if "configMapRef" in source:
                    if ref["name"] not in configmaps:
                        fail(cw, f"reads the ConfigMap {ref['name']}, which is not rendered")
                    else:
                        set_names += list(configmaps[ref["name"]].get("data", {}))
                else:
                    fail(cw, "envFrom a Secret: name each secret variable instead")
            for e in c.get("env", []) or []:
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    secret = secrets.get(ref["name"])
                    if secret is None:
                        fail(cw, f"reads the Secret {ref['name']}, which secret.example.yaml does not have")
                    elif ref["key"] not in secret and not ref.get("optional"):
                        fail(cw, f"reads {ref['key']} of the Secret {ref['name']}, which secret.example.yaml does not have")
                if "configMapKeyRef" in vf and vf["configMapKeyRef"]["name"] not in configmaps:
                    fail(cw, f"reads the ConfigMap {vf['configMapKeyRef']['name']}, which is not rendered")
            if c.get("image") == image:
                for n in set_names:
                    if n not in env_names:
                        fail(cw, f"sets {n}, which no boxoffice binary reads (not in .env.example)")
                command = c.get("command") or []
                binary = command[0] if command else None
                if not init and binary not in BINARIES:
                    fail(cw, f"runs {binary!r}, not one of the binaries {sorted(BINARIES)}")
                if not init and binary in SERVICE_ADDR and doc["kind"] == "Deployment":
                    addr = next((e.get("value") for e in c.get("env", []) if e["name"] == SERVICE_ADDR[binary]), None)
                    ports = [p["containerPort"] for p in c.get("ports", [])]
                    if addr is None or not addr.startswith("0.0.0.0:"):
                        fail(cw, f"{SERVICE_ADDR[binary]} must be 0.0.0.0:PORT (the default listens on 127.0.0.1 only)")
                    elif int(addr.rsplit(":", 1)[1]) not in ports:
                        fail(cw, f"{SERVICE_ADDR[binary]}={addr} but the container declares ports {ports}")
                    elif annotations.get("prometheus.io/port") != addr.rsplit(":", 1)[1]:
                        fail(where, f"prometheus.io/port is {annotations.get('prometheus.io/port')!r}, the service listens on {addr}")
                    if annotations.get("prometheus.io/path") != "/metrics":
                        fail(where, "prometheus.io/path must be /metrics")
            if doc["kind"] == "Deployment" and not init:
                ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
                for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                    p = c.get(probe)
                    if not p:
                        fail(cw, f"no {probe}")
                        continue
                    get = p.get("httpGet") or {}
                    if get.get("path") != path:
                        fail(cw, f"{probe} must GET {path}, not {get.get('path')!r}")
                    if get.get("port") not in ports:
                        fail(cw, f"{probe} probes port {get.get('port')!r}, which the container does not declare")
                start = c.get("startupProbe")
                if start and (start.get("httpGet") or {}).get("path") != "/health/live":
                    fail(cw, "startupProbe must GET /health/live")
    for v in spec.get("volumes", []) or []:
        if "configMap" in v and v["configMap"]["name"] not in configmaps:
            fail(where, f"volume {v['name']} names the ConfigMap {v['configMap']['name']}, which is not rendered")
        if "secret" in v and v["secret"]["secretName"] not in secrets:
            fail(where, f"volume {v['name']} names the Secret {v['secret']['secretName']}, which secret.example.yaml does not have")
    if not containers:
        fail(where, "no containers")


def check_references(docs, configmaps):
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    pods = {
        name: d["spec"]["template"]
        for kind in ("Deployment", "Job")
        for name, d in by_kind.get(kind, {}).items()
    }

    def pods_selected(selector):
        return [n for n, t in pods.items() if selector_matches(selector, t["metadata"].get("labels", {}))]

    for name, d in deployments.items():
        if not selector_matches(d["spec"]["selector"], d["spec"]["template"]["metadata"].get("labels", {})):
            fail(f"Deployment {name}", "its selector does not match its own pod template")
    services = by_kind.get("Service", {})
    for name, svc in services.items():
        selected = [n for n in deployments if selector_matches({"matchLabels": svc["spec"].get("selector", {})},
                                                               deployments[n]["spec"]["template"]["metadata"].get("labels", {}))]
        if len(selected) != 1:
            fail(f"Service {name}", f"selects {selected or 'no Deployment'}, not exactly one")
            continue
        declared = set()
        for c in deployments[selected[0]]["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                declared |= {p.get("name"), p["containerPort"]}
        for port in svc["spec"]["ports"]:
            if port.get("targetPort", port["port"]) not in declared:
                fail(f"Service {name}", f"targetPort {port.get('targetPort')!r} is not a port of {selected[0]}")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        d = deployments.get(target["name"]) if target["kind"] == "Deployment" else None
        if d is None:
            fail(f"HorizontalPodAutoscaler {name}", f"scales {target['kind']} {target['name']}, which is not rendered")
        elif "replicas" in d["spec"]:
            fail(f"Deployment {target['name']}", "sets replicas, which every apply would reset under its HPA")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not pods_selected(pdb["spec"]["selector"]):
            fail(f"PodDisruptionBudget {name}", "selects no pods")
    for name, np in by_kind.get("NetworkPolicy", {}).items():
        sel = np["spec"]["podSelector"]
        if sel and not pods_selected(sel):
            fail(f"NetworkPolicy {name}", "selects no pods")
        for expr in sel.get("matchExpressions", []) or []:
            for value in expr.get("values", []):
                if not pods_selected({"matchLabels": {expr["key"]: value}}):
                    fail(f"NetworkPolicy {name}", f"names {expr['key']}={value}, which no pod has")
        for rule in (np["spec"].get("ingress") or []) + (np["spec"].get("egress") or []):
            for peer in (rule.get("from") or []) + (rule.get("to") or []):
                if "podSelector" in peer and "namespaceSelector" not in peer and not pods_selected(peer["podSelector"]):
                    fail(f"NetworkPolicy {name}", f"a peer selects no pods: {peer['podSelector']}")
    for name, route in by_kind.get("HTTPRoute", {}).items():
        for rule in route["spec"].get("rules", []):
            for ref in rule.get("backendRefs", []) or []:
                svc = services.get(ref["name"])
                if svc is None:
                    fail(f"HTTPRoute {name}", f"routes to the Service {ref['name']}, which is not rendered")
                elif ref.get("port") not in [p["port"] for p in svc["spec"]["ports"]]:
                    fail(f"HTTPRoute {name}", f"routes to port {ref.get('port')} of {ref['name']}, which it does not serve")
    # The projector: one replica per partition. The notifier: at most one per partition
    # (a member beyond the partition count gets nothing from Kafka).
    kafka = [cm for n, cm in configmaps.items() if n.startswith("boxoffice-kafka")]
    projector = deployments.get("projector")
    notifier = deployments.get("notifier")
    if not kafka or projector is None or notifier is None:
        fail("consumers", "the projector or notifier Deployment, or the boxoffice-kafka ConfigMap, is missing")
    else:
        partitions = int(kafka[0]["data"]["KAFKA_TOPIC_PARTITIONS"])
        if projector["spec"].get("replicas") != partitions:
            fail("Deployment projector", f"replicas {projector['spec'].get('replicas')} but the topic has {partitions} partitions (KAFKA_TOPIC_PARTITIONS)")
        if not 1 <= notifier["spec"].get("replicas", 1) <= partitions:
            fail("Deployment notifier", f"replicas {notifier['spec'].get('replicas')}: from 1 to the topic's {partitions} partitions (KAFKA_TOPIC_PARTITIONS)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rendered", required=True)
    parser.add_argument("--secrets", required=True)
    parser.add_argument("--kustomization", required=True)
    parser.add_argument("--env-example", required=True)
    parser.add_argument("--routes-out", required=True)
    parser.add_argument("--summary-out", required=True)
    parser.add_argument("--versions", nargs="+", required=True)
    args = parser.parse_args()

    rendered = load(args.rendered)
    secret_docs = load(args.secrets)
    with open(args.kustomization) as f:
        kustomization = yaml.safe_load(f)
    namespace = kustomization.get("namespace")

    docs = [(f"rendered: {name_of(d)}", d) for d in rendered]
    docs += [(f"secret.example.yaml: {name_of(d)}", d) for d in secret_docs]
    for where, d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            fail(where, "not a Kubernetes object")
    if failures:
        return finish(args, docs, 0)

    print(f"==> {len(rendered)} rendered documents and {len(secret_docs)} in secret.example.yaml "
          f"against the Kubernetes schemas of {', '.join(args.versions)} (strict)")
    routes = check_schemas(docs, args.versions)
    with open(args.routes_out, "w") as f:
        json.dump(routes, f)

    print("==> our own rules: probes, resources, variables, references, replicas")
    for where, d in docs:
        ns = d.get("metadata", {}).get("namespace")
        if d["kind"] != "Namespace" and ns != namespace:
            fail(where, f"namespace {ns!r}, not {namespace!r}")
    if any(d["kind"] == "Secret" for d in rendered):
        fail("kustomization", "renders a Secret: the Secrets stay out of it (secret.example.yaml)")
    for where, d in docs:
        if d["kind"] == "Secret" and d.get("data"):
            fail(where, "use stringData placeholders in the example, never data")
    configmaps = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "ConfigMap"}
    secrets = {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}) or {})
        for d in secret_docs if d["kind"] == "Secret"
    }
    env_names = env_names_from_example(args.env_example)
    image = boxoffice_image(kustomization)
    kinds = {d["kind"] for d in rendered}
    for required in ("Deployment", "Service", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "NetworkPolicy", "HTTPRoute"):
        if required not in kinds:
            fail("kustomization", f"renders no {required}")
    for where, d in docs:
        if d["kind"] in ("Deployment", "Job"):
            check_containers(where, d, env_names, image, configmaps, secrets)
    check_references(rendered, configmaps)
    return finish(args, docs, len(routes))


def finish(args, docs, routes):
    with open(args.summary_out, "w") as f:
        json.dump({"documents": len(docs), "routes": routes, "failures": len(failures)}, f)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
