#!/bin/sh
# Anchor of one lab node. Run as:
#   ip netns exec NETNS unshare --mount --uts --propagation private sh node_init.sh HOSTNAME NODE_DIR
# It gives the node its own hostname, /run, /etc and dpkg's alternatives (overlays: the host's
# files are never written), /var/log and /root, then stays alive: its pid anchors the node's mount and
# UTS namespaces (sshd and the lab's agents join them with nsenter).
set -eu
HOST_NAME=$1
NODE_DIR=$2

fail() { echo "node_init: $*" >&2; exit 1; }

# Our private copy of the host's mount table still holds /run/netns/<name> bind mounts of every
# namespace on the machine; each would pin that namespace alive after its owner deletes it.
# One umount for all of them (a process per mount made bringing up N nodes cost N^2 processes).
awk '$2 ~ "^/run/netns/" {print $2}' /proc/self/mounts | sort -r | xargs -r -d '\n' umount -l 2>/dev/null || true
umount -l /run/netns 2>/dev/null || true

hostname "$HOST_NAME"
echo 1 > /proc/sys/net/ipv4/ip_forward

mount -t tmpfs -o mode=755,size=64m tmpfs /run || fail "tmpfs /run"
mkdir -p /run/sshd /run/flannel /run/netns
chmod 700 /run/sshd  # sshd wants it not writable by others
ND=$NODE_DIR
if [ -d "$NODE_DIR/varlib-upper" ]; then
    # Shapes whose state lives under /var/lib (k3s: /var/lib/rancher/k3s/...): /var/lib becomes an
    # overlay too. NODE_DIR itself lives under /var/lib, so it is reached through a bind mount made
    # before the overlay (upper dirs must not be on an overlay), dropped again at the end.
    mkdir -p /run/cfx-node
    mount --bind "$NODE_DIR" /run/cfx-node || fail "bind node dir"
    ND=/run/cfx-node
    mount -t overlay overlay \
        -o "lowerdir=/var/lib,upperdir=$ND/varlib-upper,workdir=$ND/varlib-work" /var/lib || fail "overlay /var/lib"
fi
mount --bind "$ND/run-flannel" /run/flannel || fail "bind /run/flannel"
# dpkg's alternatives database: an overlay too (per-node writes, nothing copied up front)
mount -t overlay overlay \
    -o "lowerdir=/var/lib/dpkg/alternatives,upperdir=$ND/alt-upper,workdir=$ND/alt-work" \
    /var/lib/dpkg/alternatives || fail "overlay alternatives"
mount --bind "$ND/log" /var/log || fail "bind /var/log"
# k3s nodes: the node's own systemctl (the lab's k3s / k3s-agent unit) on /usr/local/sbin, an
# overlay seen only in this mount namespace (first on root's PATH)
if [ -d "$ND/sbin-upper" ]; then
    mount -t overlay overlay \
        -o "lowerdir=/usr/local/sbin,upperdir=$ND/sbin-upper,workdir=$ND/sbin-work" /usr/local/sbin \
        || fail "overlay /usr/local/sbin"
fi
# the repair steps keep their backups under /var/backups: per node, never on the host
mount --bind "$ND/backups" /var/backups || fail "bind /var/backups"
mount --bind "$ND/root" /root || fail "bind /root"
mount -t overlay overlay \
    -o "lowerdir=/etc,upperdir=$ND/etc-upper,workdir=$ND/etc-work" /etc || fail "overlay /etc"

echo "$HOST_NAME" > /etc/hostname
mkdir -p /etc/kubernetes /etc/cni/net.d
[ -f "$ND/files/kubelet.conf" ] && cp "$ND/files/kubelet.conf" /etc/kubernetes/kubelet.conf
[ -f "$ND/files/admin.conf" ] && cp "$ND/files/admin.conf" /etc/kubernetes/admin.conf
[ -f "$ND/files/10-flannel.conflist" ] && cp "$ND/files/10-flannel.conflist" /etc/cni/net.d/10-flannel.conflist
chmod 600 /etc/kubernetes/*.conf 2>/dev/null || true
# Shape-specific files (k3s, calico, cilium): a tree under files/tree/{etc,var/lib}, copied into
# the node's overlays (never into the host).
for top in etc var/lib; do
    [ "$top" = var/lib ] && [ "$ND" = "$NODE_DIR" ] && continue  # /var/lib is the host's here
    if [ -d "$ND/files/tree/$top" ]; then
        cp -R --preserve=mode "$ND/files/tree/$top/." "/$top/" || fail "copy files/tree/$top"
    fi
done

# A modern Debian node: iptables is iptables-nft.
for t in iptables ip6tables; do
    if [ "$(readlink "/etc/alternatives/$t" || true)" != "/usr/sbin/$t-nft" ]; then
        update-alternatives --quiet --set "$t" "/usr/sbin/$t-nft" >/dev/null 2>&1 || fail "alternatives $t"
    fi
done
# What kubelet does at start: the hint chain in mangle of the backend it uses (iptables-wrappers
# and kube-proxy read it), and its canary chain.
iptables -w 5 -t mangle -N KUBE-IPTABLES-HINT 2>/dev/null || true
iptables -w 5 -t mangle -N KUBE-KUBELET-CANARY 2>/dev/null || true

touch "$ND/ready"
if [ "$ND" != "$NODE_DIR" ]; then
    umount -l /run/cfx-node && rmdir /run/cfx-node
fi
exec sleep infinity
