#!/bin/sh
# Capture real facts-script output from scratch network namespaces on this machine.
# Usage (root): sh tests/data/capture_scratch.sh OUTDIR
# Creates two namespaces with random names, lays out a flannel-vxlan node with kube-proxy-style
# iptables-nft rules (healthy), then a second node with faults; runs the facts script inside each
# under a private mount namespace (overlay /etc, tmpfs /run, private /root); removes everything.
set -eu
OUT=$1; R=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
A=cfxcap-$R-a; B=cfxcap-$R-b; W=$(mktemp -d)
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add "v$R" netns "$A" type veth peer name eth0 netns "$B"
ip -n "$A" link set "v$R" name eth0
for ns in "$A:10.213.250.11:10.244.0" "$B:10.213.250.12:10.244.1"; do
  n=${ns%%:*}; rest=${ns#*:}; ip=${rest%%:*}; sub=${rest#*:}
  ip -n "$n" link set lo up; ip -n "$n" addr add "$ip/24" dev eth0; ip -n "$n" link set eth0 up
  ip -n "$n" link add cni0 type bridge; ip -n "$n" addr add "$sub.1/24" dev cni0; ip -n "$n" link set cni0 up
  ip -n "$n" link add flannel.1 type vxlan id 1 local "$ip" dev eth0 dstport 8472 nolearning
  ip -n "$n" addr add "$sub.0/32" dev flannel.1; ip -n "$n" link set flannel.1 up
done
MA=$(ip -n "$A" -j link show flannel.1 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["address"])')
MB=$(ip -n "$B" -j link show flannel.1 | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["address"])')
ip -n "$A" route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
ip -n "$A" neigh add 10.244.1.0 lladdr "$MB" dev flannel.1 nud permanent
ip netns exec "$A" bridge fdb append "$MB" dev flannel.1 dst 10.213.250.12 self permanent
ip -n "$B" route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink
# B gets a STALE vtep mac for A
ip -n "$B" neigh add 10.244.0.0 lladdr aa:bb:cc:dd:ee:01 dev flannel.1 nud permanent
ip netns exec "$B" bridge fdb append aa:bb:cc:dd:ee:01 dev flannel.1 dst 10.213.250.11 self permanent
echo "$MA" > "$OUT/vtep-a.txt"; echo "$MB" > "$OUT/vtep-b.txt"

kube_rules() { # kube-proxy's layout in iptables-nft (ns, node ip)
ip netns exec "$1" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
ip netns exec "$1" iptables-nft-restore <<R
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-ZXCVB - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-JFN - [0:0]
:KUBE-EXT-JFN - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/jellyfin" -m tcp --dport 30096 -j KUBE-EXT-JFN
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-EXT-JFN -m comment --comment "masquerade traffic for default/jellyfin external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-JFN -j KUBE-SVC-JFN
-A KUBE-SEP-ZXCVB -s 10.244.1.5/32 -m comment --comment "default/jellyfin" -j KUBE-MARK-MASQ
-A KUBE-SEP-ZXCVB -p tcp -m comment --comment "default/jellyfin" -m tcp -j DNAT --to-destination 10.244.1.5:8096
-A KUBE-SERVICES -d 10.96.200.10/32 -p tcp -m comment --comment "default/jellyfin cluster IP" -m tcp --dport 8096 -j KUBE-SVC-JFN
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-JFN -m comment --comment "default/jellyfin -> 10.244.1.5:8096" -j KUBE-SEP-ZXCVB
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "kubernetes forwarding rules" -j ACCEPT
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
R
}
kube_rules "$A"; kube_rules "$B"

# faults on B: stale legacy DNAT path, FORWARD DROP in legacy, foreign nft rule, REJECT, ip_forward 0
ip netns exec "$B" iptables-legacy-restore <<R
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SEP-OLD - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30096 -j KUBE-SEP-OLD
-A KUBE-SEP-OLD -p tcp -m tcp -j DNAT --to-destination 10.244.7.9:8096
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j REJECT --reject-with icmp-host-prohibited
COMMIT
R
ip netns exec "$B" nft add rule ip nat KUBE-SEP-ZXCVB meta l4proto tcp ct state new log prefix '"cfx"' counter
ip netns exec "$B" sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'
ip -n "$B" addr add 10.244.9.1/24 dev cni0

SCRIPT="$W/facts.sh"
python3 -c 'import sys; from clusterfix_tui.core.facts import build_facts_script as b; sys.stdout.write(b(sys.argv[1:], nonce="capturenonce0001"))' 10.244.1.5 10.244.0.7 > "$SCRIPT"

run_in() { # ns, name, setup-shell
  mkdir -p "$W/$2/up" "$W/$2/wk" "$W/$2/root"
  ip netns exec "$1" unshare --mount --propagation private sh -c "
    mount -t overlay overlay -o lowerdir=/etc,upperdir=$W/$2/up,workdir=$W/$2/wk /etc
    mount -t tmpfs tmpfs /run; mount --bind $W/$2/root /root
    $3
    sh $SCRIPT" > "$OUT/$2.out" 2> "$OUT/$2.stderr" || true
}
run_in "$A" node-a-healthy '
  mkdir -p /run/flannel /etc/cni/net.d /etc/kubernetes /root/.kube
  printf "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.0.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n" > /run/flannel/subnet.env
  printf "{\n  \"name\": \"cbr0\",\n  \"cniVersion\": \"0.3.1\",\n  \"plugins\": [\n    {\"type\": \"flannel\", \"delegate\": {\"hairpinMode\": true, \"isDefaultGateway\": true}},\n    {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}}\n  ]\n}\n" > /etc/cni/net.d/10-flannel.conflist
  printf "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: SECRETCA\n    server: https://10.213.250.1:6443\n  name: kubernetes\nusers:\n- name: admin\n  user:\n    token: SECRETTOKEN\n" > /etc/kubernetes/admin.conf
  cp /etc/kubernetes/admin.conf /root/.kube/config
  printf "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.213.250.1:6443\n  name: default-cluster\n" > /etc/kubernetes/kubelet.conf'
run_in "$B" node-b-faults '
  mkdir -p /run/flannel /etc/cni/net.d /etc/kubernetes
  printf "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n" > /run/flannel/subnet.env
  printf "{\"name\":\"cbr0\",\"cniVersion\":\"0.3.1\",\"plugins\":[{\"type\":\"flannel\",\"delegate\":{\"isDefaultGateway\":true}},{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}\n" > /etc/cni/net.d/10-flannel.conflist
  printf "{\"cniVersion\":\"0.4.0\",\"name\":\"bridge\",\"type\":\"bridge\",\"bridge\":\"cni0\",\"ipam\":{\"type\":\"host-local\",\"subnet\":\"10.88.0.0/16\"}}\n" > /etc/cni/net.d/05-bridge.conf
  printf "not json {\n" > /etc/cni/net.d/99-broken.conflist
  printf "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.213.250.99:6443\n  name: default-cluster\nusers:\n- name: x\n  user:\n    client-key-data: SECRETKEY\n" > /etc/kubernetes/kubelet.conf'
# an empty namespace: no tables, no flannel, no files
C=cfxcap-$R-c; ip netns add "$C"
run_in "$C" node-c-empty ':'
ip netns del "$C"
