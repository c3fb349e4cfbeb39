#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (munge + slurmctld + slurmd on 127.0.0.1), for trying
# `bids-deface ... --plugin SLURM` and for the test suite. Debian packages: slurm-wlm, slurm-client,
# munge (scripts/apt-packages.txt). Run as root.
#
#   scripts/slurm-localhost.sh start    # idempotent: exits 0 at once if the cluster already answers
#   scripts/slurm-localhost.sh stop     # stops only the daemons that `start` started
#   scripts/slurm-localhost.sh status   # exit 0 when a node is up and idle/mixed/allocated
#
# `start` prints "started" or "already-running" as its last line. It writes /etc/slurm/slurm.conf
# only when none exists or when the existing one is ours (first line below); its state lives in
# $SLURM_LOCALHOST_STATE (default /run/bids-deface-slurm): the pid files of what it started.
# nipype's SLURM plugin calls squeue with $LOGNAME: set it (LOGNAME=$(id -un)) before running.
set -euo pipefail
STATE=${SLURM_LOCALHOST_STATE:-/run/bids-deface-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# bids-deface single-node SLURM (scripts/slurm-localhost.sh)"
PARTITION=${SLURM_LOCALHOST_PARTITION:-debug}

die() { echo "slurm-localhost: $*" >&2; exit 1; }

node_up() {
  # a node in a state that can run jobs
  local st
  st=$(timeout 10 sinfo -h -o %T 2>/dev/null | head -1) || return 1
  [[ "$st" =~ ^(idle|mixed|allocated|completing)$ ]]
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  [ "$(id -u)" = 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
  for b in munged slurmctld slurmd sinfo; do
    command -v "$b" >/dev/null || die "$b not found: apt-get install slurm-wlm slurm-client munge"
  done
  if node_up; then echo "already-running"; return 0; fi
  mkdir -p "$STATE"

  # munge: Debian's postinst makes /etc/munge/munge.key; make one if it is missing
  if ! timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
      mkdir -p /etc/munge
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
      chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge: /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
    cp /run/munge/munged.pid "$STATE/munged.pid"
    for _ in $(seq 50); do
      munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null || die "munged did not start"
  fi

  # slurm.conf: one node on 127.0.0.1 with this machine's cores and memory, one default partition.
  # linuxproc/none plugins: no cgroups needed (containers and CI have none to delegate).
  if [ -f "$CONF" ] && [ "$(head -1 "$CONF")" != "$MARK" ]; then
    die "$CONF exists and is not ours; stop that cluster or move the file away"
  fi
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2/1024*0.9)}' /proc/meminfo)
  mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  cat >"$CONF" <<EOF
$MARK
ClusterName=localhost
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

  # -c: a clean start, no jobs left over from an earlier run
  alive "$STATE/slurmctld.pid" || slurmctld -c
  alive "$STATE/slurmd.pid" || slurmd -c
  for _ in $(seq 100); do
    node_up && break
    sleep 0.2
  done
  if ! node_up; then
    # a node that registered DOWN after a previous unclean stop: bring it back
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
  fi
  node_up || die "no node came up; see /var/log/slurm/slurmctld.log and slurmd.log"
  echo "started"
}

stop() {
  # only what start started: the pid files in $STATE
  local f pid
  for f in slurmd slurmctld munged; do
    [ -f "$STATE/$f.pid" ] || continue
    pid=$(cat "$STATE/$f.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$STATE/$f.pid"
  done
  echo "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) node_up && echo "up" || { echo "down"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
