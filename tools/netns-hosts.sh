#!/usr/bin/env bash
# Hosts on one machine: network namespaces joined by veth pairs on a private bridge, with the
# latency (tc netem) and rate (tc tbf) of a real network. Needs root (CAP_NET_ADMIN). Addresses are
# in 10.213.0.0/24 and exist only inside the namespaces (the bridge has no address and no route
# out), so no packet leaves the machine.
#
#   tools/netns-hosts.sh up    NAME N      hosts NAME-0 .. NAME-(N-1), host i at 10.213.0.(10+i), on bridge NAME-br
#   tools/netns-hosts.sh shape NAME DELAY_US RATE_MBIT   every host's link: DELAY_US one way (0 = none), RATE_MBIT each way (0 = none)
#   tools/netns-hosts.sh cut   NAME I      take host I's link down (the host is cut off; its processes keep running)
#   tools/netns-hosts.sh down  NAME        delete every namespace, link and the bridge of NAME (idempotent)
#
# `shape` prints one line per host: "shaped NAME-i delay=<applied|unavailable> rate=<applied|none>". A
# kernel without sch_netem (some VM kernels) cannot delay packets: the delay is then reported as
# unavailable and only the rate is applied. NAME must be at most 8 characters (interface names are
# at most 15).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 2 ] || usage
cmd=$1
name=$2
[ ${#name} -le 8 ] || { echo "netns-hosts: NAME '$name' is longer than 8 characters" >&2; exit 2; }
[[ $name =~ ^[a-z][a-z0-9]*$ ]] || { echo "netns-hosts: NAME '$name' must be lower-case letters and digits" >&2; exit 2; }
bridge="$name-br"

hosts() { ip netns list | awk '{print $1}' | grep -E "^$name-[0-9]+$" | sort -t- -k2 -n || true; }

case "$cmd" in
  up)
    [ $# -eq 3 ] || usage
    n=$3
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || { echo "netns-hosts: N must be 1..200, got '$n'" >&2; exit 2; }
    ip link add "$bridge" type bridge
    ip link set "$bridge" up
    for i in $(seq 0 $((n - 1))); do
      ns="$name-$i"
      ip netns add "$ns"
      ip link add "${name}v$i" type veth peer name eth0 netns "$ns"
      ip link set "${name}v$i" master "$bridge" up
      ip -n "$ns" addr add "10.213.0.$((10 + i))/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
    done
    echo "up: $n hosts $name-0..$name-$((n - 1)) at 10.213.0.10..10.213.0.$((9 + n)) on bridge $bridge"
    ;;
  shape)
    [ $# -eq 4 ] || usage
    delay=$3
    rate=$4
    [[ $delay =~ ^[0-9]+$ ]] && [[ $rate =~ ^[0-9]+$ ]] || { echo "netns-hosts: DELAY_US and RATE_MBIT must be whole numbers" >&2; exit 2; }
    # tbf needs a bucket of at least one timer tick's worth of bytes at the rate: 2 ms here, 64 KiB at least
    burst=$(( rate * 1000000 / 8 / 500 ))
    [ "$burst" -ge 65536 ] || burst=65536
    for ns in $(hosts); do
      i=${ns##*-}
      ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
      tc qdisc del dev "${name}v$i" root 2>/dev/null || true
      d=none
      r=none
      parent=root
      if [ "$delay" -gt 0 ]; then
        if ip netns exec "$ns" tc qdisc add dev eth0 root handle 1: netem delay "${delay}us" limit 100000 2>/dev/null; then
          d=applied
          parent="parent 1:"
        else
          d=unavailable
        fi
      fi
      if [ "$rate" -gt 0 ]; then
        # the host's outgoing direction on its own side, the incoming one on the bridge's side of the pair
        ip netns exec "$ns" tc qdisc add dev eth0 $parent handle 2: tbf rate "${rate}mbit" burst "$burst" latency 100ms
        tc qdisc add dev "${name}v$i" root handle 2: tbf rate "${rate}mbit" burst "$burst" latency 100ms
        r=applied
      fi
      echo "shaped $ns delay=$d rate=$r"
    done
    ;;
  cut)
    [ $# -eq 3 ] || usage
    ip -n "$name-$3" link set eth0 down
    echo "cut: $name-$3 is off the network"
    ;;
  down)
    # the root side of each pair first: a namespace outlives its name while anything holds it, and
    # the kernel frees a deleted one's links later, so deleting only the names can leave links behind
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${name}v[0-9]+$" || true); do
      ip link del "$link" 2>/dev/null || true
    done
    for ns in $(hosts); do
      ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    echo "down: $name"
    ;;
  *)
    usage
    ;;
esac
