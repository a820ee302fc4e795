#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages, to try `hydra/launcher=slurm` on a laptop and
# to run the tests marked `slurm`:
#
#   sudo scripts/slurm_local.sh start    # install slurmctld slurmd slurm-client munge if missing, start the daemons
#   sudo scripts/slurm_local.sh status   # which daemons run (by the PIDs recorded at start), and sinfo
#   sudo scripts/slurm_local.sh stop     # cancel its jobs, end exactly the daemons it started
#
# Needs root on a Debian-like system (apt-get). No systemd: munged, slurmctld and `slurmd -N localhost` are started
# by hand, in that order, with their state, spool, PID and log files under one folder, $SLURM_LOCAL_DIR
# (default /tmp/slurm-local). The node offers this machine's CPUs and 90% of its memory in one default partition,
# $SLURM_LOCAL_PARTITION (default `local`). Two files outside that folder point into it while the cluster runs:
# /etc/slurm/slurm.conf, so that sinfo, sbatch and submitit find the cluster without settings, and
# /usr/local/bin/sacct, a stand-in that answers submitit's job-state query from `squeue -t all`, because a cluster
# without an accounting database has no sacct (submitit would see every state as UNKNOWN and wait forever for a job
# that died). `start` refuses to replace either where something else put it; `stop` removes them.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
PARTITION=${SLURM_LOCAL_PARTITION:-local}
SYSTEM_CONF=/etc/slurm/slurm.conf
SYSTEM_SACCT=/usr/local/bin/sacct
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)  # start order; stop goes the other way
ME=slurm_local.sh

say() { echo "$ME: $*"; }
die() { echo "$ME: $*" >&2; exit 1; }

usage() { die "usage: $ME start|stop|status (got '${1-}')"; }

# Why this machine cannot host the cluster, in one line, or nothing.
unsupported() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "needs root (it installs packages and starts daemons as root): run it with sudo"
    elif ! command -v apt-get >/dev/null; then
        echo "needs apt-get: it installs Debian's ${PACKAGES[*]} packages; elsewhere install SLURM from your distribution"
    elif [[ ! -f /etc/debian_version ]]; then
        echo "needs a Debian-like system (no /etc/debian_version here): it installs Debian's ${PACKAGES[*]} packages"
    fi
}

# munged runs as user munge and writes its PID where that user may write.
pid_file() { if [[ $1 == munged ]]; then echo "$DIR/munge/munged.pid"; else echo "$DIR/run/$1.pid"; fi; }

# The PID that `start` recorded for daemon $1, if that process still runs and is that daemon.
running_pid() {
    local file pid
    file=$(pid_file "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The package makes munge's key; where its set-up was skipped (some images), make it here
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
    fi
}

# A link at $2 to $1, unless something that is not such a link is there already.
link_into_system() {
    local target=$1 link=$2
    if [[ -e $link || -L $link ]] && [[ $(readlink "$link") != "$target" ]]; then
        die "$link exists and is not this cluster's ($target): move it away, or use that SLURM instead"
    fi
    mkdir -p "$(dirname "$link")"
    ln -sfn "$target" "$link"
}

unlink_from_system() {
    local target=$1 link=$2
    if [[ -L $link && $(readlink "$link") == "$target" ]]; then
        rm -f "$link"
    fi
}

write_config() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p "$DIR"/{state,spool,run,log,bin,munge}
    chmod 755 "$DIR"
    chown munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"  # munged wants its socket's folder searchable by all, writable by itself only
    # cred_expire: a requeued job waits this long before it starts again (SLURM's default: 120 s).
    cat >"$DIR/slurm.conf" <<EOF
# Written by $ME: a one-node cluster, its files under $DIR.
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
MpiDefault=none
JobRequeue=1
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    # The sacct stand-in: submitit asks `sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID...]`.
    cat >"$DIR/bin/sacct" <<'EOF'
#!/bin/sh
# sacct stand-in for a cluster without accounting: the states of the jobs given with -j, from `squeue -t all`
# (which keeps finished jobs for MinJobAge), in sacct's --parsable2 form with the columns JobID|State|NodeList.
ids=""
while [ $# -gt 0 ]; do
    case "$1" in
        -j|--jobs) ids="$ids${ids:+,}$2"; shift 2 ;;
        -j*) ids="$ids${ids:+,}${1#-j}"; shift ;;
        --jobs=*) ids="$ids${ids:+,}${1#--jobs=}"; shift ;;
        *) shift ;;
    esac
done
echo "JobID|State|NodeList"
[ -n "$ids" ] || exit 0
squeue -h -t all -j "$ids" -o "%i|%T|%N" 2>/dev/null || true
EOF
    chmod 755 "$DIR/bin/sacct"
}

start_daemon() {
    local name=$1 pid
    if pid=$(running_pid "$name"); then
        say "$name already running (PID $pid)"
        return
    fi
    local log="$DIR/log/$name.log"
    [[ $name == munged ]] && log="$DIR/munge/munged.log"
    case $name in
        munged)
            runuser -u munge -- munged --socket="$DIR/munge/munge.socket" --pid-file="$(pid_file munged)" \
                --log-file="$log" --seed-file="$DIR/munge/munged.seed" ;;
        slurmctld) slurmctld -f "$DIR/slurm.conf" -c ;;  # -c: a fresh cluster, no jobs from an earlier start
        slurmd) slurmd -f "$DIR/slurm.conf" -N localhost ;;
    esac || die "$name did not start; see $log"
    wait_for_file "$(pid_file "$name")"
    pid=$(running_pid "$name") || die "$name did not start; see $log"
    say "$name started (PID $pid)"
}

wait_for_file() {
    local i
    for i in $(seq 100); do
        [[ -s $1 ]] && return 0
        sleep 0.1
    done
    return 1
}

start() {
    local why
    why=$(unsupported)
    [[ -z $why ]] || die "cannot set up a local SLURM cluster here: $why"
    install_packages
    local name any_running=""
    for name in "${DAEMONS[@]}"; do
        running_pid "$name" >/dev/null && any_running=$name
    done
    # A daemon that runs keeps the configuration it read, so the files are written for a fresh start only.
    [[ -n $any_running && -f $DIR/slurm.conf ]] || write_config
    link_into_system "$DIR/slurm.conf" "$SYSTEM_CONF"
    link_into_system "$DIR/bin/sacct" "$SYSTEM_SACCT"
    for name in "${DAEMONS[@]}"; do
        start_daemon "$name"
    done
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
        [[ $state == idle* || $state == mix* || $state == alloc* ]] && break
        if [[ $state == down* || $state == drain* ]]; then  # a node state kept from an earlier start
            scontrol update NodeName=localhost State=RESUME 2>/dev/null || true
        fi
        sleep 0.5
    done
    [[ $state == idle* || $state == mix* || $state == alloc* ]] || \
        die "the node did not come up (sinfo says '${state:-nothing}'); see $DIR/log/"
    say "cluster up: partition $PARTITION, node localhost $state with $(nproc) CPUs; files in $DIR; stop with: $0 stop"
}

stop() {
    [[ $(id -u) -eq 0 ]] || die "needs root to end the daemons it started as root: run it with sudo"
    local name pid i stopped=0
    if running_pid slurmctld >/dev/null; then
        # Its jobs first, so that no job's processes outlive the daemons (SIGTERM, SIGKILL after KillWait)
        scancel --quiet --partition="$PARTITION" 2>/dev/null || true
        for _ in $(seq 80); do
            [[ -z $(squeue --noheader --partition="$PARTITION" --states=running,completing 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        if pid=$(running_pid "$name"); then
            kill "$pid"
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                kill -9 "$pid" 2>/dev/null || true
            fi
            say "$name stopped (PID $pid)"
            stopped=$((stopped + 1))
        fi
        rm -f "$(pid_file "$name")"
    done
    unlink_from_system "$DIR/slurm.conf" "$SYSTEM_CONF"
    unlink_from_system "$DIR/bin/sacct" "$SYSTEM_SACCT"
    if [[ $stopped -eq 0 ]]; then
        say "no daemon of this cluster was running (nothing recorded in $DIR/run or $DIR/munge)"
    else
        say "cluster stopped; its logs stay in $DIR/log"
    fi
}

status() {
    local name pid down=0
    for name in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$name"); then
            say "$name running (PID $pid)"
        else
            say "$name not running"
            down=1
        fi
    done
    if [[ $down -eq 0 ]]; then
        sinfo
    fi
    return $down
}

case ${1-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage "${1-}" ;;
esac
