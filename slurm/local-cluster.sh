#!/usr/bin/env bash
# A real one-node SLURM on this machine, for the tests and for trying `effrep submit` without a cluster.
#
#   slurm/local-cluster.sh start    install (if missing), configure and start munged, slurmctld, slurmd;
#                                   returns when `sinfo` shows the node idle
#   slurm/local-cluster.sh stop     stop the three daemons (state and logs are kept)
#   slurm/local-cluster.sh status   print whether each daemon runs and what sinfo says; exit 0 only if usable
#   slurm/local-cluster.sh reset    stop, then delete the state directory (jobs, logs, spool)
#
# Debian/Ubuntu only (apt-get install slurmctld slurmd slurm-client munge), run as root. There is no
# systemd in containers, so the daemons are started by hand. The node gets this machine's real CPU
# count and memory (from `slurmd -C`); jobs are tracked by process (proctrack/linuxproc), not cgroups,
# which containers rarely delegate. Requeue is on (JobRequeue=1) and signals such as
# `scancel --signal=USR2` reach the job's processes. No accounting database: `sacct` does not work
# here, as on many small clusters; `effrep status` reads progress from the HDF5 files instead.
#
# Environment: EFFREP_SLURM_DIR (state, default /tmp/effrep-slurm), EFFREP_SLURM_PARTITION (default
# debug), EFFREP_SLURM_WAIT (seconds to wait for the node, default 60).
set -euo pipefail

STATE_DIR="${EFFREP_SLURM_DIR:-/tmp/effrep-slurm}"
PARTITION="${EFFREP_SLURM_PARTITION:-debug}"
WAIT_S="${EFFREP_SLURM_WAIT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by effrep-hpc slurm/local-cluster.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "local-cluster: $*" >&2; }
die() { echo "local-cluster: error: $*" >&2; exit 1; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts system daemons); try: sudo $0 $*"
}

install_packages() {
    local missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    command -v apt-get >/dev/null || die "missing ${missing[*]} and apt-get is not available; install SLURM and munge by hand"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    # policy-rc.d in containers stops the packages from starting their services; we start them below.
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null || die "apt-get install ${PACKAGES[*]} failed"
}

pid_alive() {  # pid file -> true if its process runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_munge() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if pid_alive /run/munge/munged.pid && munge -n | unmunge >/dev/null 2>&1; then
        return
    fi
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

write_config() {
    local host node_line
    host=$(hostname -s)
    if [[ -e "$CONF" ]] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; this machine seems to have its own SLURM, use that"
    fi
    # `slurmd -C` reports the real hardware: CPUs, sockets, cores, threads and memory (MB).
    node_line=$(slurmd -C | head -n 1)
    [[ "$node_line" == NodeName=* ]] || die "slurmd -C gave no node description: $node_line"
    mkdir -p "$CONF_DIR" "$STATE_DIR"/{state,spool,log}
    cat >"$CONF.tmp" <<EOF
$MARKER
# A one-node cluster for tests; see slurm/README.md.
ClusterName=effrep-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again cred_expire seconds later (SLURM default 120 s; short for tests).
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers seldom delegate cgroups: track job processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/log/jobcomp.log
# One CPU per task, so several array tasks share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=200000
# Preemption-safe jobs: requeue allowed, a signalled job is put back in the queue by itself.
JobRequeue=1
KillWait=15
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    if [[ -e "$CONF" ]] && cmp -s "$CONF.tmp" "$CONF"; then
        rm -f "$CONF.tmp"
    else
        mv "$CONF.tmp" "$CONF"
        CONFIG_CHANGED=1
    fi
    # slurmd 22.05 always loads a cgroup plugin (autodetected, v1 or v2) even though no job is
    # confined by it; a cgroup.conf left by an earlier version of this script would get in the way.
    if [[ -e "$CONF_DIR/cgroup.conf" ]] && grep -qF "$MARKER" "$CONF_DIR/cgroup.conf"; then
        rm -f "$CONF_DIR/cgroup.conf"
    fi
}

node_state() {
    sinfo -h -N -o '%t' 2>/dev/null | head -n 1
}

start() {
    need_root start
    install_packages
    start_munge
    CONFIG_CHANGED=0
    write_config
    if ((CONFIG_CHANGED)) && { pid_alive "$STATE_DIR/slurmctld.pid" || pid_alive "$STATE_DIR/slurmd.pid"; }; then
        log "slurm.conf changed: restarting the daemons"
        stop_daemon slurmd "$STATE_DIR/slurmd.pid"
        stop_daemon slurmctld "$STATE_DIR/slurmctld.pid"
    fi
    if ! pid_alive "$STATE_DIR/slurmctld.pid"; then
        log "starting slurmctld (log: $STATE_DIR/log/slurmctld.log)"
        # -i: ignore state from an older config instead of refusing to start
        slurmctld -i || { tail -n 20 "$STATE_DIR/log/slurmctld.log" >&2; die "slurmctld did not start"; }
    fi
    if ! pid_alive "$STATE_DIR/slurmd.pid"; then
        log "starting slurmd (log: $STATE_DIR/log/slurmd.log)"
        slurmd || { tail -n 20 "$STATE_DIR/log/slurmd.log" >&2; die "slurmd did not start"; }
    fi
    local state=""
    for _ in $(seq $((WAIT_S * 2))); do
        state=$(node_state)
        case "$state" in
            idle | mix | alloc) break ;;
            drain* | down* | fail*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    case "$state" in
        idle | mix | alloc) ;;
        *)
            tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
            die "the node did not become idle within ${WAIT_S}s (sinfo state: '${state:-no answer}')"
            ;;
    esac
    log "ready: partition $PARTITION, node $(hostname -s) ($state); state in $STATE_DIR"
    sinfo
}

stop_daemon() {  # name pidfile
    local pidfile=$2 pid
    pid_alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    log "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    need_root stop
    stop_daemon slurmd "$STATE_DIR/slurmd.pid"
    stop_daemon slurmctld "$STATE_DIR/slurmctld.pid"
    stop_daemon munged /run/munge/munged.pid
}

status() {
    local ok=0
    for d in slurmctld slurmd; do
        if pid_alive "$STATE_DIR/$d.pid"; then echo "$d: running (pid $(cat "$STATE_DIR/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
    done
    if pid_alive /run/munge/munged.pid; then echo "munged: running (pid $(cat /run/munge/munged.pid))"; else echo "munged: stopped"; ok=1; fi
    if ((ok == 0)); then
        local state
        state=$(node_state)
        echo "node: ${state:-no answer from slurmctld}"
        case "$state" in idle | mix | alloc) ;; *) ok=1 ;; esac
        sinfo 2>/dev/null || true
        squeue 2>/dev/null || true
    fi
    return $ok
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset)
        stop
        log "deleting $STATE_DIR"
        rm -rf "$STATE_DIR"
        ;;
    *)
        echo "usage: $0 start|stop|status|reset" >&2
        exit 2
        ;;
esac
