#!/usr/bin/env bash
# slurm-local.sh — a real single-node SLURM cluster on this machine, for
# development and CI (Debian 12, run as root, no systemd needed).
#
#   bash scripts/slurm-local.sh start    # install if needed, configure, start, wait until idle
#   bash scripts/slurm-local.sh status   # daemons + sinfo; exit 0 only if healthy
#   bash scripts/slurm-local.sh stop     # cancel jobs, stop the daemons this script started
#
# What `start` does to the machine (on purpose, so that any later process —
# sbatch run by submitit, pytest, a shell — finds the cluster without extra
# environment):
#   * apt-get installs slurmctld slurmd slurm-client munge if missing, with a
#     temporary /usr/sbin/policy-rc.d so that dpkg does not start the daemons;
#   * creates /etc/munge/munge.key (munge:munge, 0400) if absent;
#   * writes /etc/slurm/slurm.conf (Slurm's compiled-in default path). A
#     pre-existing file not written by this script is moved aside once to
#     slurm.conf.orig-<epoch>;
#   * with accounting on (default), also installs mariadb-server slurmdbd,
#     runs a private MariaDB (data under the state dir, 127.0.0.1:$DB_PORT,
#     not the system one) and slurmdbd, and writes /etc/slurm/slurmdbd.conf
#     (0600), so that `sacct` works — submitit polls job states with sacct;
#   * keeps everything else (state, spool, database, pid files, logs,
#     job-completion log) under $SLURM_LOCAL_DIR (default /tmp/selfimprove-slurm).
# Daemons run as root (munged as user munge) and are daemonised; their pids
# are recorded in $SLURM_LOCAL_DIR/run/, and `stop` only signals those pids.
#
# Environment:
#   SLURM_LOCAL_DIR        state dir (default /tmp/selfimprove-slurm)
#   SLURM_LOCAL_TIMEOUT    seconds `start` waits for each daemon / the idle node (default 60)
#   SLURM_LOCAL_PARTITION  partition name (default debug)
#   SLURM_LOCAL_ACCOUNTING 1 (default): slurmdbd + MariaDB, sacct works;
#                          0: no database, finished jobs only in log/jobcomp.log
#   SLURM_LOCAL_DB_PORT    TCP port of the private MariaDB (default 3307)
set -euo pipefail

STATE_DIR=${SLURM_LOCAL_DIR:-/tmp/selfimprove-slurm}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-1}
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_RUN=/run/munge
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/log
DB_DIR=$STATE_DIR/mariadb
DB_SOCK=$RUN_DIR/mariadbd.sock
# Loopback-only throwaway database of a dev/CI cluster: a fixed password is fine.
DB_USER=slurm
DB_PASS=selfimprove-local
CLUSTER=selfimprove
MARKER="# Written by selfimprove scripts/slurm-local.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
if [[ $ACCOUNTING == 1 ]]; then
  PACKAGES+=(slurmdbd mariadb-server)
  DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
else
  DAEMONS=(munged slurmctld slurmd)
fi

# The config must be found by every slurm command, whatever the caller's env.
export SLURM_CONF=$CONF

log() { printf 'slurm-local: %s\n' "$*"; }
die() { printf 'slurm-local: ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, writes /etc/slurm)"
}

node_name() {
  # slurmd identifies itself by `hostname -s`; use the same name in the config.
  local n
  n=$(hostname -s 2>/dev/null || true)
  printf '%s\n' "${n:-localhost}"
}

# --- pid bookkeeping -------------------------------------------------------

pidfile() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

# True if pid $1 exists and is not a zombie. Daemons are reparented to PID 1,
# which on this VM reaps orphans only lazily, so a killed daemon can linger
# as a zombie that still has /proc/<pid>/comm.
proc_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Prints the recorded pid of daemon $1 if that process is alive and really is
# $1 (guards against a stale pid file whose pid was reused).
live_pid() {
  local name=$1 f pid comm
  f=$(pidfile "$name")
  [[ -r $f ]] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [[ -n $pid ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name" ]] || return 1
  proc_alive "$pid" || return 1
  printf '%s\n' "$pid"
}

# Pid of a process called exactly $1 that we did not start (empty if none).
foreign_pid() {
  local name=$1 ours p
  ours=$(live_pid "$name" || true)
  for p in $(pgrep -x "$name" || true); do
    [[ $p == "$ours" ]] || ! proc_alive "$p" || { printf '%s\n' "$p"; return 0; }
  done
  return 1
}

stop_pid() {
  local name=$1 pid i
  pid=$(live_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    proc_alive "$pid" || break
    sleep 0.2
  done
  if proc_alive "$pid"; then
    log "$name did not exit after 10 s; sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

# --- health ----------------------------------------------------------------

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() {
  # Long state of our node, e.g. idle, mixed, down*, drained. Empty if the
  # controller does not answer.
  timeout 10 sinfo -h -N -n "$(node_name)" -o %T 2>/dev/null | head -n1 || true
}

healthy_state() {
  case $1 in
    idle | mixed | allocated | completing) return 0 ;;
    *) return 1 ;;
  esac
}

db_ok() { mariadb-admin --socket="$DB_SOCK" --connect-timeout=2 ping >/dev/null 2>&1; }

# sacctmgr answers only when slurmdbd is up and connected to its database.
# Its last error is kept for the failure message.
dbd_ok() { timeout 10 sacctmgr -n -P list cluster format=cluster >/dev/null 2>"$LOG_DIR/sacctmgr.err"; }

is_healthy() {
  command -v sinfo >/dev/null 2>&1 || return 1
  munge_ok || return 1
  local d
  for d in "${DAEMONS[@]}"; do
    [[ $d == munged ]] || live_pid "$d" >/dev/null || return 1
  done
  healthy_state "$(node_state)"
}

# --- install & configure ---------------------------------------------------

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]} (apt-get)"
  # Without systemd, dpkg would try to start the daemons from their init
  # scripts with a default/absent config; policy-rc.d exit 101 forbids that.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  } >"$LOG_DIR/apt.log" 2>&1 || rc=$?
  if ((made_policy)); then
    rm -f "$policy"
    trap - EXIT
  fi
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (rc=$rc); see $LOG_DIR/apt.log"
}

setup_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  # /run is a tmpfs without systemd-tmpfiles: create the socket dir ourselves.
  install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating $MUNGE_KEY"
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile="$MUNGE_KEY" --force
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
  fi
  # munged refuses a key readable by others or not owned by its user.
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
}

write_conf() {
  local node cpus boards sockets cores threads mem real_mem hw
  node=$(node_name)
  # `slurmd -C` prints the hardware line slurmd will register with, e.g.
  # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
  hw=$(slurmd -C 2>/dev/null | head -n1) || true
  [[ $hw == NodeName=* ]] || die "could not read hardware from 'slurmd -C' (got: ${hw:-nothing})"
  field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
  cpus=$(field CPUs)
  boards=$(field Boards)
  sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket)
  threads=$(field ThreadsPerCore)
  mem=$(field RealMemory)
  [[ -n $cpus && -n $mem ]] || die "could not parse 'slurmd -C' output: $hw"
  # Declare a bit less memory than present: a node whose configured
  # RealMemory exceeds what slurmd finds is drained ("Low RealMemory").
  real_mem=$((mem * 90 / 100))

  if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    local backup
    backup=$CONF.orig-$(date +%s)
    log "moving existing foreign $CONF to $backup"
    mv "$CONF" "$backup"
  fi
  install -d -m 0755 "$CONF_DIR"
  local tmp
  tmp=$(mktemp "$CONF_DIR/.slurm.conf.XXXXXX")
  cat >"$tmp" <<EOF
$MARKER — regenerated on each start; edit the script instead.
# State, spool, pids and logs live under $STATE_DIR.
ClusterName=$CLUSTER
# Name plus explicit address: works even if the hostname does not resolve.
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups: plain /proc process tracking, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
$(accounting_conf)
# Finished jobs are also appended to a plain text file (readable by sacct -c).
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$(pidfile slurmctld)
SlurmdPidFile=$(pidfile slurmd)
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
# No mail on this machine; the default /usr/bin/mail does not exist.
MailProg=/bin/true
# A node that was down comes back by itself once slurmd registers.
ReturnToService=2
# Short timeouts keep CI snappy (defaults: 120/300/30/30 s).
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=5
InactiveLimit=0
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
# Allocate individual CPUs and memory, so two 1-CPU jobs share a 2-CPU node.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-$cpus} CoresPerSocket=${cores:-1} ThreadsPerCore=${threads:-1} RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  chmod 0644 "$tmp"
  mv "$tmp" "$CONF"
}

accounting_conf() {
  if [[ $ACCOUNTING == 1 ]]; then
    cat <<EOF
# Job accounting through slurmdbd (private MariaDB), so that sacct works.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
EOF
  else
    cat <<EOF
# No slurmdbd (SLURM_LOCAL_ACCOUNTING=0): sacct reports accounting disabled.
AccountingStorageType=accounting_storage/none
EOF
  fi
}

write_dbd_conf() {
  local tmp
  tmp=$(mktemp "$CONF_DIR/.slurmdbd.conf.XXXXXX")
  cat >"$tmp" <<EOF
$MARKER — regenerated on each start; edit the script instead.
AuthType=auth/munge
# slurmdbd accepts "localhost" as its host whatever the hostname is.
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$(pidfile slurmdbd)
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  # slurmdbd refuses a config readable by others (it holds a password).
  chmod 0600 "$tmp"
  mv "$tmp" "$DBD_CONF"
}

# --- daemons ---------------------------------------------------------------

# wait_for PID CHECK...: polls CHECK every 0.5 s for up to $TIMEOUT seconds;
# gives up early if process PID (the daemon being waited for) has died.
wait_for() {
  local pid=$1 i
  shift
  for ((i = 0; i < TIMEOUT * 2; i++)); do
    "$@" && return 0
    proc_alive "$pid" || return 1
    sleep 0.5
  done
  return 1
}

start_mariadb() {
  live_pid mariadbd >/dev/null && db_ok && return 0
  if [[ ! -d $DB_DIR/mysql ]]; then
    log "initialising database in $DB_DIR"
    install -d -m 0755 "$DB_DIR"
    mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" \
      --auth-root-authentication-method=socket --skip-test-db \
      >"$LOG_DIR/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed; see $LOG_DIR/mariadb-install.log"
  fi
  log "starting mariadbd (127.0.0.1:$DB_PORT)"
  # --no-defaults: ignore /etc/mysql (the system instance's datadir/socket/port);
  # small buffers, loopback only. setsid + & because mariadbd does not fork.
  setsid /usr/sbin/mariadbd --no-defaults --user=root --datadir="$DB_DIR" \
    --socket="$DB_SOCK" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$(pidfile mariadbd)" \
    --log-error="$LOG_DIR/mariadbd.log" --innodb-buffer-pool-size=32M \
    --innodb-log-file-size=16M </dev/null >/dev/null 2>&1 &
  # setsid execs (no fork: a background job is not a group leader), so $! is mariadbd.
  wait_for "$!" db_ok || die "mariadbd did not come up; see $LOG_DIR/mariadbd.log"
  live_pid mariadbd >/dev/null || die "mariadbd answers but its pid file is missing; is port $DB_PORT taken?"
  # Idempotent: user and grant for slurmdbd (which creates its own tables).
  mariadb --socket="$DB_SOCK" -e "
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';" ||
    die "could not create the slurm database user"
}

start_slurmdbd() {
  start_daemon slurmdbd
  # The first start creates the tables, which takes a few seconds.
  wait_for "$(live_pid slurmdbd)" dbd_ok ||
    die "slurmdbd not answering ($(tail -n1 "$LOG_DIR/sacctmgr.err" 2>/dev/null)); see $LOG_DIR/slurmdbd.log"
  # Register the cluster before slurmctld connects, so its jobs are stored.
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
  fi
}

start_munged() {
  if munge_ok; then
    live_pid munged >/dev/null || log "munged already running (not started by this script); reusing it"
    return 0
  fi
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged >>"$LOG_DIR/munged.out" 2>&1 ||
    die "munged failed to start; see /var/log/munge/munged.log"
  local i
  for ((i = 0; i < 50; i++)); do
    munge_ok && break
    sleep 0.2
  done
  munge_ok || die "munged started but 'munge -n | unmunge' fails; see /var/log/munge/munged.log"
  # munged writes its pid to its default pid file; record it with ours.
  cp "$MUNGE_RUN/munged.pid" "$(pidfile munged)" 2>/dev/null ||
    pgrep -x -u munge munged | head -n1 >"$(pidfile munged)"
}

start_daemon() {
  local name=$1 pid
  if live_pid "$name" >/dev/null; then
    return 0
  fi
  if pid=$(foreign_pid "$name"); then
    die "a $name not started by this script is running (pid $pid); stop it first"
  fi
  log "starting $name"
  # Both fork into the background and write their pid file (see slurm.conf).
  "/usr/sbin/$name" >>"$LOG_DIR/$name.out" 2>&1 ||
    die "$name failed to start ($(tail -n1 "$LOG_DIR/$name.out")); see $LOG_DIR/$name.log"
  local i
  for ((i = 0; i < 50; i++)); do
    live_pid "$name" >/dev/null && return 0
    sleep 0.2
  done
  die "$name did not stay up; see $LOG_DIR/$name.log"
}

wait_idle() {
  local node state deadline resumed=0
  node=$(node_name)
  deadline=$((SECONDS + TIMEOUT))
  while ((SECONDS < deadline)); do
    state=$(node_state)
    healthy_state "$state" && { log "node $node is $state"; return 0; }
    # A node left down/drained by an earlier run: resume it once.
    if ((!resumed)) && [[ $state == down* || $state == drain* ]]; then
      scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    live_pid slurmctld >/dev/null || die "slurmctld died; see $LOG_DIR/slurmctld.log"
    live_pid slurmd >/dev/null || die "slurmd died; see $LOG_DIR/slurmd.log"
    sleep 1
  done
  die "node $node not idle after ${TIMEOUT}s (state: ${state:-no answer}); see $LOG_DIR/"
}

# --- commands --------------------------------------------------------------

cmd_start() {
  need_root
  install -d -m 0755 "$STATE_DIR" "$RUN_DIR" "$LOG_DIR"
  if is_healthy; then
    log "already running and healthy; nothing to do"
    return 0
  fi
  install_packages
  setup_munge
  # The config is only rewritten while slurmctld is down, so a half-started
  # cluster is not reconfigured under its feet.
  local fresh_ctld=0
  if ! live_pid slurmctld >/dev/null; then
    write_conf
    fresh_ctld=1
  fi
  install -d -m 0755 "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
  start_munged
  if [[ $ACCOUNTING == 1 ]]; then
    live_pid slurmdbd >/dev/null || write_dbd_conf
    start_mariadb
    start_slurmdbd
  fi
  start_daemon slurmctld
  start_daemon slurmd
  wait_idle
  # `stop` leaves an empty queue, so jobs recovered from the saved state come
  # from a cluster that was killed (e.g. CI ending the session's processes);
  # their submitters are gone and they would only eat the 2 CPUs.
  if ((fresh_ctld)); then
    cancel_all_jobs "left over from an unclean shutdown"
  fi
}

# Cancels every job in the queue and waits (up to 10 s) for them to be gone.
cancel_all_jobs() {
  local why=$1 jobs i
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  [[ -n $jobs ]] || return 0
  log "cancelling $(wc -w <<<"$jobs") job(s) $why"
  # shellcheck disable=SC2086 # one word per job id
  scancel --quiet $jobs 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    [[ -z $(squeue -h -o %i 2>/dev/null || true) ]] && return 0
    sleep 0.5
  done
}

cmd_stop() {
  need_root
  # Jobs still running would leave orphaned slurmstepd processes behind.
  if live_pid slurmctld >/dev/null; then
    cancel_all_jobs "still in the queue"
  fi
  # Reverse start order; daemons of the other accounting mode are stopped too.
  local d
  for d in slurmd slurmctld slurmdbd mariadbd munged; do
    stop_pid "$d"
  done
  log "stopped"
}

cmd_status() {
  local ok=0 name pid
  for name in "${DAEMONS[@]}"; do
    if pid=$(live_pid "$name"); then
      log "$name: running (pid $pid)"
    elif [[ $name == munged ]] && munge_ok; then
      log "munged: running (not started by this script)"
    else
      log "$name: not running"
      ok=1
    fi
  done
  if command -v sinfo >/dev/null 2>&1 && live_pid slurmctld >/dev/null; then
    timeout 10 sinfo || ok=1
    healthy_state "$(node_state)" || ok=1
  else
    ok=1
  fi
  if ((ok == 0)); then log "healthy"; else log "not healthy"; fi
  return "$ok"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
