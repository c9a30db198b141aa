"""The lab's cluster DNS add-on, as API objects: what kubeadm installs (Deployment kube-system/
coredns, pods labelled k8s-app=kube-dns, Service kube-system/kube-dns 10.96.0.10 with its
Endpoints and EndpointSlice). k3s ships the same names and labels.

API-level only: no CoreDNS process runs and no node's kube-proxy programs the kube-dns ClusterIP,
so nothing in the lab answers DNS queries. The objects behave as their controllers make them
behave: the endpoints follow the pods' readiness, a deleted pod is recreated by its Deployment
(on the same node) while the Deployment has replicas. The `dns-*` faults (lab/faults.py, # dns)
change them through `set_state`.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

NS = "kube-system"
DEPLOYMENT = "coredns"
SERVICE = "kube-dns"
LABELS = {"k8s-app": "kube-dns"}
RS_HASH = "7db6d8ff4d"
IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
DNS_IP = "10.96.0.10"
PORTS = [{"name": "dns", "port": 53, "protocol": "UDP"},
         {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
         {"name": "metrics", "port": 9153, "protocol": "TCP"}]
# CoreDNS's loop plugin refusing to start (the classic crash loop: a node's resolv.conf points at
# a local stub resolver, so "forward . /etc/resolv.conf" forwards to itself)
LOOP_LOG = ('[FATAL] plugin/loop: Loop (127.0.0.1:41580 -> :53) detected for zone ".", see '
            'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO 4547991504243258144.'
            '3688648895315093531."')
STARTED = "2024-11-05T09:12:44Z"


def _pod_ip(node: dict[str, Any], k: int) -> str:
    """An address of the node's pod range the lab never hands to its netns pods (they cycle
    through .2 - .250): the top of the block, below the broadcast."""
    net = ipaddress.ip_network(str(node.get("pod_block") or node["pod_cidr"]), strict=False)
    return str(net.network_address + net.num_addresses - 2 - k)


def _container() -> dict[str, Any]:
    return {"name": "coredns", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
            "args": ["-conf", "/etc/coredns/Corefile"],
            "ports": [{"containerPort": p["port"], "name": p["name"], "protocol": p["protocol"]}
                      for p in PORTS],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                               "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                               "failureThreshold": 3}}


def _pod(name: str, node: dict[str, Any], ip: str, rs_uid: str | None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS,
                     "labels": {**LABELS, "pod-template-hash": RS_HASH},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": f"{DEPLOYMENT}-{RS_HASH}", "controller": True,
                                          "blockOwnerDeletion": True,
                                          **({"uid": rs_uid} if rs_uid else {})}]},
        "spec": {"nodeName": node["name"], "containers": [_container()],
                 "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
                 "serviceAccountName": "coredns", "restartPolicy": "Always",
                 "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                 {"key": "node-role.kubernetes.io/control-plane",
                                  "effect": "NoSchedule"}]},
        "status": _running(node, ip),
    }


def _running(node: dict[str, Any], ip: str) -> dict[str, Any]:
    cond = [{"type": t, "status": "True"} for t in
            ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"phase": "Running", "hostIP": node["ip"], "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": STARTED, "qosClass": "Burstable", "conditions": cond,
            "containerStatuses": [{"name": "coredns", "image": IMAGE, "ready": True,
                                   "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": STARTED}},
                                   "containerID": "containerd://" + secrets.token_hex(8)}]}


def _crashing(status: dict[str, Any], pod: str) -> dict[str, Any]:
    st = dict(status)
    st["conditions"] = [dict(c, **({"status": "False", "reason": "ContainersNotReady"}
                                   if c["type"] in ("Ready", "ContainersReady") else {}))
                        for c in st.get("conditions") or []]
    st["containerStatuses"] = [{
        "name": "coredns", "image": IMAGE, "ready": False, "started": False, "restartCount": 6,
        "state": {"waiting": {"reason": "CrashLoopBackOff",
                              "message": "back-off 2m40s restarting failed container=coredns "
                                         f"pod={pod}_{NS}"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": LOOP_LOG,
                                     "startedAt": STARTED, "finishedAt": STARTED}},
        "containerID": "containerd://" + secrets.token_hex(8)}]
    return st


def seed(api: Any, nodes: list[dict[str, Any]]) -> None:
    """Put the healthy DNS add-on: 2 coredns pods (on the first two nodes), their Deployment,
    ReplicaSet, the kube-dns Service and its endpoints."""
    placed = (nodes[:2] if len(nodes) >= 2 else nodes * 2)[:2]
    tpl = {"metadata": {"labels": dict(LABELS)},
           "spec": {"containers": [_container()], "dnsPolicy": "Default",
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns"}}
    api.put("apps/v1/deployments", NS, DEPLOYMENT, {
        "metadata": {"name": DEPLOYMENT, "namespace": NS, "labels": dict(LABELS), "generation": 1,
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": dict(LABELS)},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": tpl},
        "status": {}})
    dep = api.get("apps/v1/deployments", NS, DEPLOYMENT) or {}
    rs = api.put("apps/v1/replicasets", NS, f"{DEPLOYMENT}-{RS_HASH}", {
        "metadata": {"name": f"{DEPLOYMENT}-{RS_HASH}", "namespace": NS,
                     "labels": {**LABELS, "pod-template-hash": RS_HASH},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": DEPLOYMENT, "controller": True,
                                          "uid": (dep.get("metadata") or {}).get("uid")}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {**LABELS, "pod-template-hash": RS_HASH}},
                 "template": tpl},
        "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}})
    rs_uid = (rs.get("metadata") or {}).get("uid")
    for k, node in enumerate(placed):
        name = f"{DEPLOYMENT}-{RS_HASH}-{secrets.token_hex(3)[:5]}"
        api.put("v1/pods", NS, name, _pod(name, node, _pod_ip(node, k // max(1, len(nodes))), rs_uid))
    api.put("v1/services", NS, SERVICE, {
        "metadata": {"name": SERVICE, "namespace": NS,
                     "labels": {**LABELS, "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"type": "ClusterIP", "selector": dict(LABELS), "clusterIP": DNS_IP,
                 "clusterIPs": [DNS_IP], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "sessionAffinity": "None",
                 "ports": [dict(p, targetPort=p["port"]) for p in PORTS]},
        "status": {"loadBalancer": {}}})
    refresh(api)


def dns_pods(api: Any) -> list[dict[str, Any]]:
    return [p for p in api.list("v1/pods", NS, label_selector="k8s-app=kube-dns")
            if not (p.get("metadata") or {}).get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def refresh(api: Any) -> None:
    """What the endpoints controllers and the Deployment controller write from the pods."""
    pods = dns_pods(api)
    ready = [p for p in pods if _ready(p) and (p.get("status") or {}).get("podIP")]
    not_ready = [p for p in pods if not _ready(p) and (p.get("status") or {}).get("podIP")]

    def addr(p: dict[str, Any]) -> dict[str, Any]:
        m = p["metadata"]
        return {"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "namespace": NS, "name": m["name"],
                              "uid": m.get("uid")}}

    subset: dict[str, Any] = {"ports": [dict(p) for p in PORTS]}
    if ready:
        subset["addresses"] = [addr(p) for p in ready]
    if not_ready:
        subset["notReadyAddresses"] = [addr(p) for p in not_ready]
    api.put("v1/endpoints", NS, SERVICE, {
        "metadata": {"name": SERVICE, "namespace": NS, "labels": dict(LABELS)},
        "subsets": [subset] if (ready or not_ready) else []})
    api.put("discovery.k8s.io/v1/endpointslices", NS, f"{SERVICE}-x7k2p", {
        "metadata": {"name": f"{SERVICE}-x7k2p", "namespace": NS,
                     "generateName": f"{SERVICE}-",
                     "labels": {**LABELS, "kubernetes.io/service-name": SERVICE,
                                "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [p["status"]["podIP"]],
                       "conditions": {"ready": _ready(p), "serving": _ready(p),
                                      "terminating": False},
                       "nodeName": p["spec"]["nodeName"],
                       "targetRef": {"kind": "Pod", "namespace": NS,
                                     "name": p["metadata"]["name"],
                                     "uid": p["metadata"].get("uid")}}
                      for p in ready + not_ready],
        "ports": [dict(p) for p in PORTS]})

    def st(o: dict[str, Any]) -> None:
        reps = (o.get("spec") or {}).get("replicas")
        o["status"] = {"observedGeneration": (o.get("metadata") or {}).get("generation", 1),
                       "replicas": len(pods), "updatedReplicas": len(pods),
                       "readyReplicas": len(ready), "availableReplicas": len(ready),
                       **({"unavailableReplicas": reps - len(ready)}
                          if isinstance(reps, int) and reps > len(ready) else {})}
        if not ready:
            o["status"].pop("readyReplicas")
            o["status"].pop("availableReplicas")
    api.mutate("apps/v1/deployments", NS, DEPLOYMENT, st)


def set_state(api: Any, nodes: list[dict[str, Any]], state: str) -> dict[str, Any]:
    """"crashloop": every DNS pod in CrashLoopBackOff (CoreDNS's loop detection); "scaled-to-zero":
    the Deployment at replicas 0, its pods gone; "healthy": the seeded add-on again."""
    if state == "crashloop":
        names = []
        for p in dns_pods(api):
            name = p["metadata"]["name"]
            api.mutate("v1/pods", NS, name,
                       lambda o, n=name: o.__setitem__("status", _crashing(o.get("status") or {}, n)))
            api.set_pod_log(NS, name, LOOP_LOG + "\n", previous=LOOP_LOG + "\n")
            names.append(name)
        refresh(api)
        return {"pods": names}
    if state == "scaled-to-zero":
        api.mutate("apps/v1/deployments", NS, DEPLOYMENT,
                   lambda o: o.setdefault("spec", {}).__setitem__("replicas", 0))
        api.mutate("apps/v1/replicasets", NS, f"{DEPLOYMENT}-{RS_HASH}",
                   lambda o: o.setdefault("spec", {}).__setitem__("replicas", 0))
        gone = []
        for p in dns_pods(api):
            api.delete("v1/pods", NS, p["metadata"]["name"])
            gone.append(p["metadata"]["name"])
        refresh(api)
        return {"deleted": gone}
    if state == "healthy":
        for p in dns_pods(api):
            api.delete("v1/pods", NS, p["metadata"]["name"])
        seed(api, nodes)
        return {}
    raise ValueError(f"unknown DNS state {state!r} (crashloop, scaled-to-zero, healthy)")


def on_pod_deleted(api: Any, nodes: list[dict[str, Any]], ns: str, name: str,
                   before: dict[str, Any] | None) -> bool:
    """The ReplicaSet controller: a DNS pod deleted through the API is replaced by a new, Running
    one on the same node while the Deployment wants more pods than it has. True if it was one."""
    meta = (before or {}).get("metadata") or {}
    if ns != NS or (meta.get("labels") or {}).get("k8s-app") != LABELS["k8s-app"]:
        return False
    dep = api.get("apps/v1/deployments", NS, DEPLOYMENT) or {}
    want = (dep.get("spec") or {}).get("replicas")
    if isinstance(want, int) and len(dns_pods(api)) < want:
        node_name = ((before or {}).get("spec") or {}).get("nodeName")
        node = next((n for n in nodes if n["name"] == node_name), nodes[0] if nodes else None)
        if node is not None:
            ip = ((before or {}).get("status") or {}).get("podIP") or _pod_ip(node, 0)
            rs = api.get("apps/v1/replicasets", NS, f"{DEPLOYMENT}-{RS_HASH}") or {}
            new = f"{DEPLOYMENT}-{RS_HASH}-{secrets.token_hex(3)[:5]}"
            api.put("v1/pods", NS, new, _pod(new, node, ip, (rs.get("metadata") or {}).get("uid")))
    refresh(api)
    return True
