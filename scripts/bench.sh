#!/usr/bin/env bash
# Benchmarks pgshadow with pgbench -S (select-only), in two parts:
#
#   relay   the primary path: pgbench -S against
#             direct     PostgreSQL itself,
#             pgbouncer  PgBouncer in session mode (the reference pooler),
#             pgshadow   pgshadow (release build, shadow disabled),
#           in the simple, extended and prepared query modes at several
#           client counts;
#   shadow  the cost of the shadow: pgbench -S -M prepared -c 16 against
#           pgshadow with the shadow off, and on with sample_rate 0, 0.01
#           and 1.0 (old schema "public", new schema "v2" = views on the
#           public tables, so every comparison must match); per run it
#           scrapes the instance's /metrics for comparisons, mismatches and
#           dropped samples, and checks the targets (PASS/FAIL, reported
#           only: the script does not fail on a missed target). Then the
#           one-time cost of looking up relation keys in the catalog: on the
#           sample_rate 1.0 instance, one statement each over fresh
#           relations (one lookup per relation), and one statement over ten
#           fresh relations at once (one lookup for all ten).
#           only: the script does not fail on a missed target);
#   tls     TLS on both legs (scripts/bench-tls.sh): pgbench -S -M prepared
#           at 16 and 64 clients with sslmode=require against PgBouncer
#           (client_tls_sslmode = require, server_tls_sslmode = verify-full)
#           and pgshadow (listen.tls_mode = "require", upstream.tls =
#           "verify-full"), in the same run, with the ratio.
#
# It prints one Markdown report (machine facts, the tables, and the CPU split
# between pgbench, PostgreSQL and the proxy) on stdout.
#
# Everything runs on this machine: a throw-away cluster, its own PgBouncer and
# pgshadow instances, all in one temporary directory that is removed on exit,
# also on Ctrl-C or error. See BENCHMARKS.md for what the numbers mean.
#
# Usage: scripts/bench.sh [--markdown-out FILE] [--raw-out FILE] [--check]
#   --check  only look for the programs the benchmark needs, print them, exit
#
# Environment (defaults in brackets):
#   BENCH_PARTS    ["relay shadow tls"] which parts to run (relay, shadow,
#                          tls; they always run in that order)
#   BENCH_TLS_CLIENTS    ["16 64"]  pgbench -c of the TLS part
#   BENCH_TLS_MODE       [prepared] pgbench -M of the TLS part
#   BENCH_SHADOW   [unset] 0: skip the shadow part; 1: run it (whatever
#                          BENCH_PARTS says)
#   BENCH_SECONDS  [10]    pgbench -T of every measured run (both parts)
#   BENCH_CLIENTS  ["1 16 64"]                 relay part only
#   BENCH_MODES    ["simple extended prepared"] relay part only
#   BENCH_ROUNDS   [3]     measured runs per target and cell; the order of
#                          the targets rotates from round to round (shadow
#                          part: a balanced order, best in multiples of 4)
#   BENCH_WARMUP   [5]     seconds of warm-up per target before measuring
#   BENCH_SCALE    [10]    pgbench -i -s
#   BENCH_JOBS     [min(clients, nproc)] pgbench -j of the relay part
#   BENCH_SHADOW_MODE    [prepared] pgbench -M of the shadow part
#   BENCH_SHADOW_CLIENTS [16]       pgbench -c of the shadow part
#   BENCH_SHADOW_JOBS    [2]        pgbench -j of the shadow part (at most -c)
#   BENCH_KEY_RELATIONS  [20]       shadow part: fresh relations looked up one
#                          statement each for the catalog lookup cost (0: skip
#                          that measurement)
#   BENCH_PAUSE    [1]     seconds of rest between runs
#   BENCH_SHADOW_RESTART [0] shadow part: seconds of warm-up after restarting
#                          the four instances before every round (0: they
#                          run throughout). Restarting keeps whatever luck
#                          one process has (thread placement, memory
#                          layout) from sticking to one configuration.
#   BENCH_OUT      same as --markdown-out
#   BENCH_RAW_OUT  same as --raw-out (one TSV line per measured run; the
#                  shadow part's runs go to FILE with -shadow before .tsv)
#   BENCH_NO_BUILD [unset] 1: skip `cargo build --release`, use the existing binary
#   BENCH_PERF     [unset] 1: count the proxies' context switches and system
#                          calls per transaction with `perf stat` (adds a
#                          small overhead to the proxy runs: a profile, not a
#                          TPS measurement; relay part only)
#   PGSHADOW_PG_BINDIR     directory with initdb/postgres/pgbench/psql
#   PGBOUNCER              pgbouncer binary [pgbouncer on PATH or /usr/sbin/pgbouncer]
set -euo pipefail

readonly TARGETS=(direct pgbouncer pgshadow)
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- arguments
MARKDOWN_OUT=${BENCH_OUT:-}
CHECK_ONLY=""
RAW_OUT=${BENCH_RAW_OUT:-}
while [[ $# -gt 0 ]]; do
    case $1 in
        --markdown-out) [[ $# -ge 2 ]] || die "--markdown-out needs a FILE"; MARKDOWN_OUT=$2; shift 2 ;;
        --markdown-out=*) MARKDOWN_OUT=${1#*=}; shift ;;
        --raw-out) [[ $# -ge 2 ]] || die "--raw-out needs a FILE"; RAW_OUT=$2; shift 2 ;;
        --raw-out=*) RAW_OUT=${1#*=}; shift ;;
        --check) CHECK_ONLY=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CLIENTS_LIST=${BENCH_CLIENTS:-1 16 64}
MODES_LIST=${BENCH_MODES:-simple extended prepared}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-5}
SCALE=${BENCH_SCALE:-10}
PAUSE=${BENCH_PAUSE:-1}
SHADOW_RESTART=${BENCH_SHADOW_RESTART:-0}
NPROC=$(nproc)
# A run is flagged as disturbed when more CPU than this (in cores) went to
# processes other than pgbench, PostgreSQL and the proxy.
NOISE_CORES=0.25

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for pair in "BENCH_SECONDS=$SECONDS_PER_RUN" "BENCH_ROUNDS=$ROUNDS" "BENCH_SCALE=$SCALE"; do
    is_uint "${pair#*=}" && ((${pair#*=} > 0)) || die "${pair%%=*} must be a positive integer, got '${pair#*=}'"
done
for pair in "BENCH_WARMUP=$WARMUP" "BENCH_PAUSE=$PAUSE" "BENCH_SHADOW_RESTART=$SHADOW_RESTART"; do
    is_uint "${pair#*=}" || die "${pair%%=*} must be a non-negative integer, got '${pair#*=}'"
done
[[ -z ${BENCH_JOBS:-} ]] || { is_uint "$BENCH_JOBS" && ((BENCH_JOBS > 0)); } ||
    die "BENCH_JOBS must be a positive integer, got '$BENCH_JOBS'"
read -r -a CLIENTS <<<"$CLIENTS_LIST"
read -r -a MODES <<<"$MODES_LIST"
((${#CLIENTS[@]} > 0)) || die "BENCH_CLIENTS is empty"
((${#MODES[@]} > 0)) || die "BENCH_MODES is empty"
MAX_CLIENTS=0
for c in "${CLIENTS[@]}"; do
    is_uint "$c" && ((c > 0)) || die "BENCH_CLIENTS must hold positive integers, got '$c'"
    ((c > MAX_CLIENTS)) && MAX_CLIENTS=$c
done
for m in "${MODES[@]}"; do
    case $m in simple | extended | prepared) ;; *) die "BENCH_MODES: unknown mode '$m' (simple, extended, prepared)" ;; esac
done

# Which parts run.
RUN_RELAY="" RUN_SHADOW="" RUN_TLS=""
PARTS_LIST=${BENCH_PARTS:-relay shadow tls}
read -r -a PARTS <<<"${PARTS_LIST//,/ }"
for part in "${PARTS[@]}"; do
    case $part in
        relay) RUN_RELAY=1 ;;
        shadow) RUN_SHADOW=1 ;;
        tls) RUN_TLS=1 ;;
        *) die "BENCH_PARTS: unknown part '$part' (relay, shadow, tls)" ;;
    esac
done
case ${BENCH_SHADOW:-} in
    "") ;;
    0) RUN_SHADOW="" ;;
    1) RUN_SHADOW=1 ;;
    *) die "BENCH_SHADOW must be 0 or 1, got '$BENCH_SHADOW'" ;;
esac
[[ -n $RUN_RELAY || -n $RUN_SHADOW || -n $RUN_TLS ]] || die "nothing to run: BENCH_PARTS='$PARTS_LIST' BENCH_SHADOW='${BENCH_SHADOW:-}'"
# shellcheck source=scripts/bench-tls.sh
source "$SCRIPT_DIR/bench-tls.sh"
[[ -z $RUN_TLS ]] || tls_check_args

# The shadow part: one cell, four pgshadow configurations.
SHADOW_MODE=${BENCH_SHADOW_MODE:-prepared}
SHADOW_CLIENTS=${BENCH_SHADOW_CLIENTS:-16}
SHADOW_JOBS=${BENCH_SHADOW_JOBS:-2}
KEY_RELATIONS=${BENCH_KEY_RELATIONS:-20}
is_uint "$KEY_RELATIONS" || die "BENCH_KEY_RELATIONS must be a non-negative integer, got '$KEY_RELATIONS'"
case $SHADOW_MODE in simple | extended | prepared) ;; *) die "BENCH_SHADOW_MODE: unknown mode '$SHADOW_MODE' (simple, extended, prepared)" ;; esac
for pair in "BENCH_SHADOW_CLIENTS=$SHADOW_CLIENTS" "BENCH_SHADOW_JOBS=$SHADOW_JOBS"; do
    is_uint "${pair#*=}" && ((${pair#*=} > 0)) || die "${pair%%=*} must be a positive integer, got '${pair#*=}'"
done
((SHADOW_JOBS <= SHADOW_CLIENTS)) || SHADOW_JOBS=$SHADOW_CLIENTS
# Configuration ids (also the pgbench targets), their labels in the report,
# and their [shadow] sections. All but [shadow] is the same for the four.
readonly SHADOW_CONFIGS=(shadow-off rate-0 rate-0.01 rate-1)
declare -A SHADOW_LABEL=(
    [shadow-off]="shadow off" [rate-0]="sample_rate 0" [rate-0.01]="sample_rate 0.01" [rate-1]="sample_rate 1.0"
)
shadow_section() {
    local rate first
    case $1 in
        shadow-off) printf '[shadow]\nenabled = false\n'; return ;;
        rate-0) rate=0.0 first=0 ;;
        rate-0.01) rate=0.01 first=3 ;;
        rate-1) rate=1.0 first=3 ;;
    esac
    cat <<EOF
[shadow]
enabled = true
sample_rate = $rate
first_executions = $first
user = "pgshadow_reader"
old_search_path = "public"
new_search_path = "v2"
queue_capacity = 1024
EOF
}

# pgbench threads: one per client up to one per CPU. pgbench shares the CPUs
# with the servers; more threads than cores only adds scheduling, while a
# single thread would make pgbench the bottleneck at 16 and 64 clients.
jobs_for() {
    local clients=$1
    if [[ -n ${BENCH_JOBS:-} ]]; then
        ((BENCH_JOBS < clients)) && echo "$BENCH_JOBS" || echo "$clients"
    else
        ((NPROC < clients)) && echo "$NPROC" || echo "$clients"
    fi
}

# ---------------------------------------------------------------- binaries
has_server() { [[ -x $1/initdb && -x $1/postgres ]]; }
find_pg_bindir() {
    if [[ -n ${PGSHADOW_PG_BINDIR:-} ]]; then
        has_server "$PGSHADOW_PG_BINDIR" || die "PGSHADOW_PG_BINDIR=$PGSHADOW_PG_BINDIR holds no initdb/postgres"
        echo "$PGSHADOW_PG_BINDIR"
        return
    fi
    local initdb dir
    if initdb=$(command -v initdb 2>/dev/null); then
        dir=$(dirname "$(readlink -f "$initdb")")
        if has_server "$dir"; then echo "$dir"; return; fi
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if has_server "$dir"; then echo "$dir"; return; fi
    done
    die "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: \
apt-get install -y postgresql (or set PGSHADOW_PG_BINDIR)"
}
PG_BIN=$(find_pg_bindir)

# Client programs: the cluster's own version first, then PATH.
find_client() {
    local name=$1 package=$2
    if [[ -x $PG_BIN/$name ]]; then echo "$PG_BIN/$name"; return; fi
    command -v "$name" 2>/dev/null || die "$name not found in $PG_BIN or on PATH: apt-get install -y $package"
}
PGBENCH=$(find_client pgbench "postgresql (Debian/Ubuntu ship pgbench in the server package; postgresql-contrib on older releases)")
PSQL=$(find_client psql postgresql-client)
PG_ISREADY=$(find_client pg_isready postgresql-client)
[[ -z ${PGBOUNCER:-} || -x ${PGBOUNCER:-} ]] || die "PGBOUNCER=$PGBOUNCER is not an executable file"
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer 2>/dev/null || true)}
[[ -n $PGBOUNCER ]] || { [[ -x /usr/sbin/pgbouncer ]] && PGBOUNCER=/usr/sbin/pgbouncer; }
# Only the relay and TLS parts use PgBouncer.
[[ (-z $RUN_RELAY && -z $RUN_TLS) || (-n $PGBOUNCER && -x $PGBOUNCER) ]] ||
    die "pgbouncer not found on PATH or at /usr/sbin/pgbouncer: apt-get install -y pgbouncer (or set PGBOUNCER), or run only the shadow part (BENCH_PARTS=shadow)"
# The shadow part reads pgshadow's /metrics: curl, or bash's /dev/tcp.
CURL=$(command -v curl 2>/dev/null || true)
command -v cargo >/dev/null || [[ -n ${BENCH_NO_BUILD:-} ]] || die "cargo not found: install Rust (https://rustup.rs) or set BENCH_NO_BUILD=1 with a built target/release/pgshadow"
TIME_BIN=/usr/bin/time
[[ -x $TIME_BIN ]] || die "/usr/bin/time not found (used to measure pgbench's CPU): apt-get install -y time"

# The proxies' system calls, counted per transaction when BENCH_PERF=1.
readonly PERF_EVENTS=context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex
PERF=""
if [[ -n ${BENCH_PERF:-} ]]; then
    PERF=$(command -v perf 2>/dev/null) || die "BENCH_PERF is set but perf is not installed: apt-get install -y linux-perf"
    "$PERF" stat -e "$PERF_EVENTS" -o /dev/null -- true 2>/dev/null ||
        die "BENCH_PERF: perf cannot count the syscall tracepoints here (needs root or kernel.perf_event_paranoid <= -1)"
fi

# PostgreSQL and PgBouncer refuse to run as root: hand them to `postgres`.
AS_SERVER_USER=()
if [[ $(id -u) -eq 0 ]]; then
    getent passwd postgres >/dev/null ||
        die "running as root, but there is no 'postgres' system user to run PostgreSQL and PgBouncer as: apt-get install -y postgresql, or run as an ordinary user"
    command -v setpriv >/dev/null || die "setpriv not found (needed to run the servers as 'postgres' when root): apt-get install -y util-linux"
    # setpriv execs, so the pid we record is the server's own and signals reach it.
    AS_SERVER_USER=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi

if [[ -n $CHECK_ONLY ]]; then
    printf '%-10s %s\n' server "$PG_BIN" pgbench "$PGBENCH" psql "$PSQL" pg_isready "$PG_ISREADY" \
        pgbouncer "${PGBOUNCER:-(not found; only the relay part needs it)}" \
        metrics "${CURL:-bash /dev/tcp (no curl)}" "run as" "${AS_SERVER_USER[*]:-$(id -un)}" \
        parts "${RUN_RELAY:+relay }${RUN_SHADOW:+shadow }${RUN_TLS:+tls}" \
        openssl "$(command -v openssl 2>/dev/null || echo '(not found; only the tls part needs it)')"
    exit 0
fi

# Connection settings from the caller's environment must not leak in.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGPASSFILE PGSERVICE PGSERVICEFILE PGOPTIONS PGDATA PGAPPNAME
export PGSSLMODE=disable PGGSSENCMODE=disable PGCONNECT_TIMEOUT=5 LC_ALL=C
DB=bench

# ---------------------------------------------------------------- lifecycle
WORK=""
PG_PID="" BOUNCER_PID="" TLS_BOUNCER_PID="" PGBENCH_PID="" PERF_PID=""
# The pgshadow instances: the relay part's one, and one per shadow configuration.
declare -A TARGET_PORT=() TARGET_PID=() ADMIN_PORT=()
# sslmode pgbench connects to each target with (default: disable).
declare -A TARGET_SSLMODE=()
SHADOW_PIDS=()
USED_PORTS=" "

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# Sends $2 to pid $1, waits up to $3 seconds, then SIGKILL.
stop_pid() {
    local pid=$1 sig=$2 deadline=$((SECONDS + $3))
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
        log "pid $pid did not stop after SIG$sig; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PGBENCH_PID" TERM 5
    stop_pid "$PERF_PID" INT 5
    local pid
    for pid in "${SHADOW_PIDS[@]}"; do
        stop_pid "$pid" TERM 10       # graceful shutdown; no sessions are left
    done
    stop_pid "$BOUNCER_PID" TERM 10   # SIGTERM: immediate shutdown
    stop_pid "$TLS_BOUNCER_PID" TERM 10
    stop_pid "$PG_PID" INT 20         # SIGINT: fast shutdown
    if [[ -n $WORK && -d $WORK ]]; then
        if ((rc != 0 && rc != 130 && rc != 143)); then
            for f in "$WORK"/postgres.log "$WORK"/pgbouncer*.log "$WORK"/pgbouncer*.stderr "$WORK"/pgshadow*.log; do
                [[ -s $f ]] && { log "--- last lines of $(basename "$f") ---"; tail -n 15 "$f" >&2; }
            done
        fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# A port nothing listens on right now. The daemons' readiness checks below
# then prove that it is ours.
free_port() {
    local port tries=0
    while ((tries++ < 100)); do
        port=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS != *" $port "* ]] || continue
        if command -v ss >/dev/null; then
            [[ -z $(ss -Htan "( sport = :$port )" 2>/dev/null) ]] && { echo "$port"; return; }
        elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free TCP port found"
}
# take_port VAR: a free port, distinct from every port taken so far (two
# daemons started one after the other must not pick the same one).
take_port() {
    local -n port_ref=$1
    port_ref=$(free_port)
    USED_PORTS+="$port_ref "
}

# Runs "$@" until it succeeds or $2 seconds pass; fails early if pid $1 died.
wait_until() {
    local pid=$1 timeout=$2 what=$3
    shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        alive "$pid" || die "$what exited during startup"
        ((SECONDS < deadline)) || die "$what not ready after ${timeout}s"
        sleep 0.2
    done
}

select_1() { "$PSQL" -X -h 127.0.0.1 -p "$1" -U postgres -d "$DB" -Atqc 'SELECT 1' | grep -qx 1; }

# ---------------------------------------------------------------- build
# The commit the binary is built from, and whether the tree differs from it
# (with a digest of the tracked changes, to tell two dirty builds apart).
# Taken just before the build: someone may be editing the tree meanwhile.
git_commit() {
    local c g=(git -c safe.directory="$REPO" -C "$REPO")
    c=$("${g[@]}" rev-parse --short=12 HEAD 2>/dev/null) || { echo unknown; return; }
    if [[ -n $("${g[@]}" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
        c="$c (+ uncommitted changes under src/ or Cargo.*; tracked diff sha256 $("${g[@]}" diff HEAD -- src Cargo.toml Cargo.lock | sha256sum | cut -c1-12))"
    fi
    echo "$c"
}
cd "$REPO"
GIT_DESC=$(git_commit)
SHADOW_BIN=$REPO/target/release/pgshadow
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
    log "building pgshadow (cargo build --release)"
    cargo build --release --quiet --bin pgshadow >&2 || die "cargo build --release failed"
fi
[[ -x $SHADOW_BIN ]] || die "$SHADOW_BIN missing: run cargo build --release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgshadow-bench.XXXXXX")
chmod 755 "$WORK"

# ---------------------------------------------------------------- PostgreSQL
take_port PG_PORT
log "initdb in $WORK/data"
[[ ${#AS_SERVER_USER[@]} -eq 0 ]] || chown postgres: "$WORK"
(cd "$WORK" && "${AS_SERVER_USER[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust \
    -E UTF8 --locale=C --no-sync >"$WORK/initdb.log" 2>&1) ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
printf 'host all all 127.0.0.1/32 trust\nlocal all all trust\n' >"$WORK/data/pg_hba.conf"
[[ ${#AS_SERVER_USER[@]} -eq 0 ]] || chown postgres: "$WORK/data/pg_hba.conf"

# fsync/synchronous_commit/full_page_writes off: durability is not what is
# measured. autovacuum off: the workload only reads and `pgbench -i` has
# vacuumed; a late autovacuum would only add noise. shared_buffers holds the
# whole scale-10 data set.
PG_SETTINGS=(
    -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$WORK"
    -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
    -c shared_buffers=512MB -c autovacuum=off -c jit=off
)
if [[ -n $RUN_TLS ]]; then
    tls_make_certs
    mapfile -t -O "${#PG_SETTINGS[@]}" PG_SETTINGS < <(tls_pg_settings)
fi
log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
(cd "$WORK" && exec "${AS_SERVER_USER[@]}" "$PG_BIN/postgres" -D "$WORK/data" -p "$PG_PORT" \
    "${PG_SETTINGS[@]}" >"$WORK/postgres.log" 2>&1) &
PG_PID=$!
wait_until "$PG_PID" 60 PostgreSQL "$PG_ISREADY" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
"$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$DB" >"$WORK/pgbench-init.log" 2>&1 ||
    { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }
if [[ -n $RUN_SHADOW ]]; then
    # The "new schema" of the shadow part: views on the public tables, so old
    # and new return the same rows and any mismatch is pgshadow's fault.
    log "creating schema v2 (views on the pgbench tables)"
    "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" >/dev/null <<'SQL'
-- The shadow refuses a superuser: it logs in as a reader (trust, no password).
CREATE ROLE pgshadow_reader LOGIN;
GRANT pg_read_all_data TO pgshadow_reader;
CREATE SCHEMA v2;
CREATE VIEW v2.pgbench_accounts AS SELECT * FROM public.pgbench_accounts;
CREATE VIEW v2.pgbench_branches AS SELECT * FROM public.pgbench_branches;
CREATE VIEW v2.pgbench_tellers AS SELECT * FROM public.pgbench_tellers;
CREATE VIEW v2.pgbench_history AS SELECT * FROM public.pgbench_history;
SQL
    # Relations nobody has read yet, for the catalog lookup cost: keycost_N
    # (composite primary keys) and keyjoin_1..10, each with a view in v2.
    if ((KEY_RELATIONS > 0)); then
        "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" >/dev/null <<SQL
DO \$\$
DECLARE t text;
BEGIN
    FOR t IN SELECT 'keycost_' || n FROM generate_series(1, $KEY_RELATIONS) n
             UNION ALL SELECT 'keyjoin_' || n FROM generate_series(1, 10) n LOOP
        EXECUTE format('CREATE TABLE public.%I (region int NOT NULL, id int NOT NULL, day date NOT NULL, note text, PRIMARY KEY (region, id))', t);
        EXECUTE format('CREATE UNIQUE INDEX ON public.%I (id, day)', t);
        EXECUTE format('INSERT INTO public.%I SELECT n %% 3, n, date ''2026-01-01'' + n %% 4, ''n'' FROM generate_series(1, 20) n', t);
        EXECUTE format('CREATE VIEW v2.%I AS SELECT * FROM public.%I', t, t);
    END LOOP;
END
\$\$;
SQL
    fi
fi

# ---------------------------------------------------------------- PgBouncer
# pgbouncer_ini NAME PORT: the configuration every PgBouncer of the
# benchmark shares (session mode, trust, the bench database), logging to
# $WORK/NAME.log; the TLS part appends its settings.
pgbouncer_ini() {
    local name=$1 port=$2
    cat <<EOF
[databases]
$DB = host=127.0.0.1 port=$PG_PORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 200
max_db_connections = 0
server_reset_query = DISCARD ALL
logfile = $WORK/$name.log
pidfile = $WORK/$name.pid
log_connections = 0
log_disconnections = 0
EOF
}

start_pgbouncer() {
    take_port BOUNCER_PORT
    printf '"postgres" ""\n' >"$WORK/userlist.txt"
    pgbouncer_ini pgbouncer "$BOUNCER_PORT" >"$WORK/pgbouncer.ini"
    [[ ${#AS_SERVER_USER[@]} -eq 0 ]] || chown postgres: "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
    log "starting PgBouncer on 127.0.0.1:$BOUNCER_PORT"
    (cd "$WORK" && exec "${AS_SERVER_USER[@]}" "$PGBOUNCER" -q "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.stderr" 2>&1) &
    BOUNCER_PID=$!
    wait_until "$BOUNCER_PID" 30 PgBouncer select_1 "$BOUNCER_PORT"
    TARGET_PORT[pgbouncer]=$BOUNCER_PORT
    TARGET_PID[pgbouncer]=$BOUNCER_PID
}

# ---------------------------------------------------------------- pgshadow
# Its /metrics, on stdout; fails unless the admin server answered 200.
scrape_metrics() {
    local port=$1
    if [[ -n $CURL ]]; then
        "$CURL" -fsS --max-time 5 "http://127.0.0.1:$port/metrics"
    else
        # HTTP/1.0 over bash's /dev/tcp: the server closes after the reply.
        timeout 5 bash -c '
            exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
            printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$1" >&3
            IFS= read -r status <&3 || exit 1
            [[ $status == "HTTP/1."[01]" 200"* ]] || exit 1
            while IFS= read -r line <&3 && [[ ${line%$'"'"'\r'"'"'} != "" ]]; do :; done
            cat <&3' _ "$port"
    fi
}
# The counters the shadow part reports, from one scrape of port $1, as
# "comparisons match mismatch other_outcomes queue_full queries not_sampled
#  queue_depth duration_sum_s duration_count" (missing series count as 0).
metric_totals() {
    local body
    body=$(scrape_metrics "$1") || return 1
    awk '
        /^#/ || NF < 2 { next }
        { key = $1; v = $NF + 0; name = key; sub(/\{.*/, "", name) }
        name == "pgshadow_comparisons_total" {
            cmp += v
            if (key ~ /result="match"/) m += v
            else if (key ~ /result="mismatch"/) mm += v
            else other += v }
        name == "pgshadow_skipped_total" && key ~ /reason="queue_full"/ { qf += v }
        name == "pgshadow_skipped_total" && key ~ /reason="not_sampled"/ { ns += v }
        name == "pgshadow_queries_total" { q += v }
        name == "pgshadow_queue_depth" { qd += v }
        name == "pgshadow_shadow_duration_seconds_sum" { ds += v }
        name == "pgshadow_shadow_duration_seconds_count" && key ~ /side="old"/ { dc += v }
        END { printf "%.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.6f %.0f\n", cmp, m, mm, other, qf, q, ns, qd, ds, dc }' <<<"$body"
}
# Waits until the shadow of the instance with admin port $1 is idle: queue
# empty and no comparison finished in the last 0.3 s (so none is in flight).
# Prints the seconds it took.
wait_drained() {
    local port=$1 t0=$SECONDS start now prev="" cur
    start=$(date +%s.%N)
    while :; do
        cur=$(metric_totals "$port") || die "cannot scrape http://127.0.0.1:$port/metrics"
        read -r c _ _ _ _ _ _ qd _ <<<"$cur"
        [[ $qd == 0 && $c == "$prev" ]] && break
        prev=$c
        ((SECONDS - t0 < 120)) || { log "warning: shadow on admin port $port not drained after 120s"; break; }
        sleep 0.3
    done
    now=$(date +%s.%N)
    awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f\n", b - a }'
}

# start_pgshadow NAME SHADOW_SECTION [LISTEN_LINES UPSTREAM_LINES READY]:
# one pgshadow instance with its own listen and admin ports, registered as
# pgbench target NAME. Without UPSTREAM_LINES the upstream leg is plain
# (upstream.tls = "disable"), as PgBouncer's is by default; READY is the
# readiness check (select_1).
start_pgshadow() {
    local name=$1 section=$2 listen_lines=${3:-} upstream_lines=${4:-'tls = "disable"'} ready=${5:-select_1}
    local port admin pid
    take_port port
    take_port admin
    cat >"$WORK/pgshadow-$name.toml" <<EOF
[listen]
address = "127.0.0.1:$port"
shutdown_timeout_ms = 2000
$listen_lines

[upstream]
host = "127.0.0.1"
port = $PG_PORT
$upstream_lines

$section

[store]
url = "sqlite://$WORK/pgshadow-$name-mismatches.db"

[admin]
address = "127.0.0.1:$admin"

[log]
level = "warn,pgshadow::cli=info,pgshadow::server=info"
EOF
    log "starting pgshadow ($name) on 127.0.0.1:$port, admin 127.0.0.1:$admin"
    RUST_LOG= "$SHADOW_BIN" run --config "$WORK/pgshadow-$name.toml" >"$WORK/pgshadow-$name.log" 2>&1 &
    pid=$!
    SHADOW_PIDS+=("$pid")
    wait_until "$pid" 30 "pgshadow ($name)" grep -q 'listening' "$WORK/pgshadow-$name.log"
    wait_until "$pid" 30 "pgshadow ($name)" "$ready" "$port"
    wait_until "$pid" 30 "pgshadow ($name) admin server" scrape_metrics "$admin"
    TARGET_PORT[$name]=$port
    TARGET_PID[$name]=$pid
    ADMIN_PORT[$name]=$admin
}

# restart_pgshadow NAME: stops instance NAME and starts it again with the
# same configuration and ports.
restart_pgshadow() {
    local name=$1 pid
    log "restarting pgshadow ($name)"
    stop_pid "${TARGET_PID[$name]}" TERM 10
    RUST_LOG= "$SHADOW_BIN" run --config "$WORK/pgshadow-$name.toml" >>"$WORK/pgshadow-$name.log" 2>&1 &
    pid=$!
    SHADOW_PIDS+=("$pid")
    wait_until "$pid" 30 "pgshadow ($name)" select_1 "${TARGET_PORT[$name]}"  # shadow part only: plain
    wait_until "$pid" 30 "pgshadow ($name) admin server" scrape_metrics "${ADMIN_PORT[$name]}"
    TARGET_PID[$name]=$pid
}

TARGET_PORT[direct]=$PG_PORT
TARGET_PID[direct]=""
if [[ -n $RUN_RELAY ]]; then
    start_pgbouncer
    start_pgshadow pgshadow "$(shadow_section shadow-off)"
fi
if [[ -n $RUN_SHADOW ]]; then
    for cfg in "${SHADOW_CONFIGS[@]}"; do
        start_pgshadow "$cfg" "$(shadow_section "$cfg")"
    done
fi
if [[ -n $RUN_TLS ]]; then
    tls_start_pgbouncer
    tls_start_pgshadow
fi

# ---------------------------------------------------------------- CPU accounting
# CPU ticks (1/CLK_TCK s) used so far by pid $1 and its children: its own
# time, the time of children it has reaped, and that of live children. For
# the postmaster this covers every backend, including those that exit during
# a run; for PgBouncer and pgshadow (one process each) it is their own time.
CLK_TCK=$(getconf CLK_TCK)
tree_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v p="$1" '
        { rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          # f[2] ppid, f[12] utime, f[13] stime, f[14] cutime, f[15] cstime
          if ($1 == p) t += f[12] + f[13] + f[14] + f[15]
          else if (f[2] == p) t += f[12] + f[13] }
        END { printf "%d\n", t }'
}
# tree_ticks, read while no child of $1 exits: a backend reaped in the middle
# of the scan would be counted twice or not at all. Backends of the last run
# are still exiting right after pgbench returns, so wait until the set of
# children holds still and has no zombie in it.
children_of() { ps --ppid "$1" -o pid=,stat= 2>/dev/null || true; }
settled_tree_ticks() {
    local pid=$1 before after ticks tries=0
    while :; do
        before=$(children_of "$pid")
        ticks=$(tree_ticks "$pid")
        after=$(children_of "$pid")
        if [[ $(awk '{print $1}' <<<"$before") == $(awk '{print $1}' <<<"$after") && $before != *Z* ]]; then
            echo "$ticks"
            return
        fi
        ((++tries < 200)) || { log "warning: children of pid $pid never settled; CPU split may be off"; echo "$ticks"; return; }
        sleep 0.05
    done
}
# "busy idle steal" ticks of the whole machine, from /proc/stat.
machine_ticks() {
    awk '$1 == "cpu" { printf "%d %d %d\n", $2 + $3 + $4 + $7 + $8, $5 + $6, $9; exit }' /proc/stat
}

# ---------------------------------------------------------------- one pgbench run
# run_pgbench TARGET MODE CLIENTS SECONDS [JOBS]
# Sets RUN_TPS, RUN_LAT (ms), RUN_TXNS, RUN_CPU and RUN_PERF (tab-separated).
# TARGET: direct, pgbouncer, pgshadow or a shadow configuration.
run_pgbench() {
    local target=$1 mode=$2 clients=$3 secs=$4 jobs=${5:-}
    local port out rc proxy_pid pg0 px0 m0 m1 pg1 px1 t0 t1
    [[ -n $jobs ]] || jobs=$(jobs_for "$clients")
    [[ -n ${TARGET_PORT[$target]:-} ]] || die "unknown target '$target'"
    port=${TARGET_PORT[$target]}
    out=$WORK/pgbench.out
    proxy_pid=${TARGET_PID[$target]}

    pg0=$(settled_tree_ticks "$PG_PID")
    px0=0
    [[ -z $proxy_pid ]] || px0=$(tree_ticks "$proxy_pid")
    local perf_pid=""
    if [[ -n $PERF && -n $proxy_pid && -z ${NO_PERF:-} ]]; then
        "$PERF" stat -x, -e "$PERF_EVENTS" -p "$proxy_pid" -o "$WORK/perf.out" &
        perf_pid=$!
        PERF_PID=$perf_pid
        sleep 0.3 # let perf attach before the load starts
    fi
    m0=$(machine_ticks)
    t0=$(date +%s.%N)
    # In the background, so that Ctrl-C reaches our trap at once.
    PGSSLMODE=${TARGET_SSLMODE[$target]:-disable} "$TIME_BIN" -f '%U %S' -o "$WORK/pgbench.time" \
        "$PGBENCH" -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$mode" \
        -c "$clients" -j "$jobs" -T "$secs" "$DB" >"$out" 2>&1 &
    PGBENCH_PID=$!
    if wait "$PGBENCH_PID"; then rc=0; else rc=$?; fi
    PGBENCH_PID=""
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        PERF_PID=""
    fi
    pg1=$(settled_tree_ticks "$PG_PID")
    px1=0
    [[ -z $proxy_pid ]] || px1=$(tree_ticks "$proxy_pid")
    m1=$(machine_ticks)
    t1=$(date +%s.%N)

    if ((rc != 0)); then
        cat "$out" >&2
        die "pgbench against $target (-M $mode -c $clients) failed with status $rc"
    fi
    RUN_TPS=$(awk '/^tps = / { print $3; exit }' "$out")
    RUN_LAT=$(awk '/^latency average = / { print $4; exit }' "$out")
    RUN_TXNS=$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$out")
    local failed
    failed=$(awk -F'[: ]+' '/^number of failed transactions/ { print $5; exit }' "$out")
    [[ -n $RUN_TPS && -n $RUN_LAT && -n $RUN_TXNS ]] || { cat "$out" >&2; die "cannot parse pgbench output"; }
    [[ -z $failed || $failed == 0 ]] || log "warning: $failed failed transactions against $target"
    alive "$PG_PID" || die "PostgreSQL died during the run"
    [[ -z $proxy_pid ]] || alive "$proxy_pid" || die "$target died during the run"

    # The proxy's context switches, syscalls, reads, writes, epoll waits and
    # futex calls per transaction (empty fields without BENCH_PERF).
    RUN_PERF=$'\t\t\t\t\t'
    if [[ -n $perf_pid && -s $WORK/perf.out ]]; then
        RUN_PERF=$(awk -F, -v txns="$RUN_TXNS" '
            { v[$3] = $1 + 0 }
            END {
              t = (txns > 0) ? txns : 1
              printf "%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f",
                v["context-switches"] / t, v["raw_syscalls:sys_enter"] / t,
                (v["syscalls:sys_enter_read"] + v["syscalls:sys_enter_recvfrom"]) / t,
                (v["syscalls:sys_enter_write"] + v["syscalls:sys_enter_writev"] + v["syscalls:sys_enter_sendto"] + v["syscalls:sys_enter_sendmsg"]) / t,
                (v["syscalls:sys_enter_epoll_wait"] + v["syscalls:sys_enter_epoll_pwait"]) / t,
                v["syscalls:sys_enter_futex"] / t }' "$WORK/perf.out")
    fi
    # Cores used on average during the run: pgbench, postgres, proxy, other
    # (everything else incl. softirq and other users of the machine), idle,
    # steal; and the proxy's CPU time per transaction in microseconds.
    RUN_CPU=$(awk -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v txns="$RUN_TXNS" \
        -v bench="$(cat "$WORK/pgbench.time")" -v pg=$((pg1 - pg0)) -v px=$((px1 - px0)) \
        -v m0="$m0" -v m1="$m1" 'BEGIN {
            wall = t1 - t0; split(bench, b, " "); split(m0, a, " "); split(m1, z, " ")
            cb = (b[1] + b[2]) / wall; cpg = pg / hz / wall; cpx = px / hz / wall
            busy = (z[1] - a[1]) / hz / wall; idle = (z[2] - a[2]) / hz / wall
            steal = (z[3] - a[3]) / hz / wall
            other = busy - cb - cpg - cpx; if (other < 0) other = 0
            printf "%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\n", cb, cpg, cpx, other, idle, steal,
                (txns > 0 ? px / hz * 1e6 / txns : 0) }')
}

# ---------------------------------------------------------------- machine facts
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_GB=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
FACTS=(
    "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    "- Machine: $NPROC CPUs ($(nproc --all) online), ${CPU_MODEL:-unknown CPU}, ${MEM_GB} GiB RAM, kernel $(uname -r)"
    "- Load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    "- PostgreSQL: $("$PG_BIN/postgres" --version) ($PG_BIN); $("$PGBENCH" --version)"
    "- pgshadow: commit $GIT_DESC, release build${BENCH_NO_BUILD:+ (not rebuilt: binary from $(date -u -r "$SHADOW_BIN" '+%Y-%m-%d %H:%M UTC'))}, $("$SHADOW_BIN" --version)"
    "- Server: max_connections=300, fsync=off, synchronous_commit=off, full_page_writes=off, shared_buffers=512MB, autovacuum=off; all connections over TCP on 127.0.0.1"
    "- pgbench, PostgreSQL, PgBouncer and pgshadow all share these $NPROC CPUs: the proxies compete with the database and the load generator for CPU, so proxy overhead shows up as lost TPS."
)
RELAY_FACTS=()
if [[ -n $RUN_RELAY ]]; then
    RELAY_FACTS=(
        "- PgBouncer: $("$PGBOUNCER" --version 2>&1 | head -n1) ($PGBOUNCER), pool_mode = session; pgshadow with \`[shadow] enabled = false\`"
        "- Runs: pgbench -n -S -T $SECONDS_PER_RUN, scale $SCALE, $ROUNDS round(s) per cell with the target order rotating, ${WARMUP}s warm-up per target, -j = min(clients, ${BENCH_JOBS:-$NPROC})"
        ${PERF:+"- BENCH_PERF=1: perf stat was attached to the proxy during its runs; their TPS includes the counting overhead."}
    )
fi
SHADOW_FACTS=(
    "- Runs: pgbench -n -S -M $SHADOW_MODE -c $SHADOW_CLIENTS -j $SHADOW_JOBS -T $SECONDS_PER_RUN, scale $SCALE, against four pgshadow instances, one per configuration (same binary and configuration except \`[shadow]\`, $( ((SHADOW_RESTART > 0)) && printf 'restarted before every round and warmed for %ss' "$SHADOW_RESTART" || printf 'all running throughout'), own listen and admin ports; $ROUNDS round(s) in a balanced order (per 4 rounds each configuration runs once in every position and once right after every other), ${WARMUP}s warm-up per configuration, ${PAUSE}s pause between runs"
    "- Shadow on: \`user = \"pgshadow_reader\"\` (a role with pg_read_all_data, trust; the shadow refuses a superuser), \`old_search_path = \"public\"\`, \`new_search_path = \"v2\"\`, \`max_in_flight = 2\` (the default), \`queue_capacity = 1024\`, \`first_executions = 0\` with sample_rate 0 and 3 (the default) otherwise; other keys at their defaults. Schema v2 holds one view \`SELECT * FROM public.<table>\` per pgbench table, so this is an A/A comparison: every comparison must match"
    "- Shadow counters: the instance's /metrics ($([[ -n $CURL ]] && echo curl || echo "bash /dev/tcp")) read right before each run and, after pgbench exits, once the shadow is idle again (queue depth 0 and no comparison finished for 0.3 s); the report shows the differences, so they belong to that run (including the comparisons of its samples that finished after pgbench exited: \"drain\"). TPS and CPU cover pgbench's run only"
)

read -r LOAD1 _ </proc/loadavg
if awk -v l="$LOAD1" 'BEGIN { exit !(l > 1.0) }'; then
    log "warning: load average is $LOAD1 before the benchmark; other work on the machine will show up as noise"
fi

# ---------------------------------------------------------------- relay part
RESULTS=$WORK/results.tsv
relay_part() {
    local target mode clients round i n=0 cell=0 total cb cpg cpx cot cid cst
    if ((WARMUP > 0)); then
        for target in "${TARGETS[@]}"; do
            log "warm-up: $target, -M ${MODES[0]} -c $MAX_CLIENTS for ${WARMUP}s"
            run_pgbench "$target" "${MODES[0]}" "$MAX_CLIENTS" "$WARMUP"
            sleep "$PAUSE"
        done
    fi
    printf 'mode\tclients\ttarget\tround\ttps\tlat_ms\ttxns\tcpu_pgbench\tcpu_postgres\tcpu_proxy\tcpu_other\tcpu_idle\tcpu_steal\tproxy_us_per_txn\tproxy_cs_per_txn\tproxy_syscalls_per_txn\tproxy_reads_per_txn\tproxy_writes_per_txn\tproxy_epoll_waits_per_txn\tproxy_futex_per_txn\n' >"$RESULTS"
    total=$((${#MODES[@]} * ${#CLIENTS[@]} * ROUNDS * 3))
    for mode in "${MODES[@]}"; do
        for clients in "${CLIENTS[@]}"; do
            for ((round = 0; round < ROUNDS; round++)); do
                # Rotate the order per round and per cell, so no target is always
                # first (or last) and slow drift spreads over all three.
                for ((i = 0; i < 3; i++)); do
                    target=${TARGETS[$(((i + round + cell) % 3))]}
                    n=$((n + 1))
                    run_pgbench "$target" "$mode" "$clients" "$SECONDS_PER_RUN"
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$clients" "$target" $((round + 1)) \
                        "$RUN_TPS" "$RUN_LAT" "$RUN_TXNS" "$RUN_CPU" "$RUN_PERF" >>"$RESULTS"
                    IFS=$'\t' read -r cb cpg cpx cot cid cst _ <<<"$RUN_CPU"
                    log "$(printf '[%d/%d] %-8s c=%-3s %-9s %9.1f tps %7.3f ms  cores: pgbench %s postgres %s proxy %s other %s idle %s' \
                        "$n" "$total" "$mode" "$clients" "$target" "$RUN_TPS" "$RUN_LAT" "$cb" "$cpg" "$cpx" "$cot" "$cid")"
                    sleep "$PAUSE"
                done
            done
            cell=$((cell + 1))
        done
    done
}

# ---------------------------------------------------------------- shadow part
SHADOW_RESULTS=$WORK/results-shadow.tsv
# Differences between three metric_totals readings (before the run, when
# pgbench exited, after the drain): comparisons, matches, mismatches, other
# outcomes, queue_full drops, queries, not_sampled (before → after the
# drain), comparisons finished while pgbench ran, and the mean time of the
# old + new query per comparison in ms.
metric_delta() {
    awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN {
        split(a, x, " "); split(b, y, " "); split(c, z, " ")
        n = z[10] - x[10]
        printf "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\n", z[1] - x[1], z[2] - x[2], z[3] - x[3], z[4] - x[4],
            z[5] - x[5], z[6] - x[6], z[7] - x[7], y[1] - x[1], (n > 0 ? (z[9] - x[9]) * 1000 / n : 0) }'
}
shadow_part() {
    local cfg admin round i n=0 total=$((ROUNDS * ${#SHADOW_CONFIGS[@]})) before at_end after drain delta
    local cb cpg cpx cot cid cmp m mm oth qf
    if ((WARMUP > 0)); then
        for cfg in "${SHADOW_CONFIGS[@]}"; do
            log "shadow warm-up: $cfg, -M $SHADOW_MODE -c $SHADOW_CLIENTS for ${WARMUP}s"
            run_pgbench "$cfg" "$SHADOW_MODE" "$SHADOW_CLIENTS" "$WARMUP" "$SHADOW_JOBS"
            wait_drained "${ADMIN_PORT[$cfg]}" >/dev/null
            sleep "$PAUSE"
        done
    fi
    printf 'config\tround\ttps\tlat_ms\ttxns\tcpu_pgbench\tcpu_postgres\tcpu_proxy\tcpu_other\tcpu_idle\tcpu_steal\tproxy_us_per_txn\tcomparisons\tmatches\tmismatches\tother_outcomes\tdropped_queue_full\tqueries\tnot_sampled\tcomparisons_during_run\tshadow_ms_per_comparison\tdrain_s\n' >"$SHADOW_RESULTS"
    # A balanced order (Williams square): over each 4 rounds every
    # configuration runs once in every position and right after every other
    # one exactly once, so neither a slow first run nor whatever a run leaves
    # behind for the next (the 100 % run's drained queue, say) always lands
    # on the same configuration. (A plain rotation keeps the cyclic order:
    # shadow off would always follow sample_rate 1.0.)
    local -a first=(0 1 3 2)
    for ((round = 0; round < ROUNDS; round++)); do
        if ((SHADOW_RESTART > 0 && round > 0)); then
            for cfg in "${SHADOW_CONFIGS[@]}"; do
                restart_pgshadow "$cfg"
                run_pgbench "$cfg" "$SHADOW_MODE" "$SHADOW_CLIENTS" "$SHADOW_RESTART" "$SHADOW_JOBS"
                wait_drained "${ADMIN_PORT[$cfg]}" >/dev/null
            done
            sleep "$PAUSE"
        fi
        for ((i = 0; i < ${#SHADOW_CONFIGS[@]}; i++)); do
            cfg=${SHADOW_CONFIGS[$(((first[i] + round) % ${#SHADOW_CONFIGS[@]}))]}
            admin=${ADMIN_PORT[$cfg]}
            n=$((n + 1))
            before=$(metric_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics ($cfg)"
            run_pgbench "$cfg" "$SHADOW_MODE" "$SHADOW_CLIENTS" "$SECONDS_PER_RUN" "$SHADOW_JOBS"
            at_end=$(metric_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics ($cfg)"
            drain=$(wait_drained "$admin")
            after=$(metric_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics ($cfg)"
            delta=$(metric_delta "$before" "$at_end" "$after")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" $((round + 1)) "$RUN_TPS" "$RUN_LAT" "$RUN_TXNS" \
                "$RUN_CPU" "$delta" "$drain" >>"$SHADOW_RESULTS"
            IFS=$'\t' read -r cb cpg cpx cot cid _ <<<"$RUN_CPU"
            IFS=$'\t' read -r cmp m mm oth qf _ <<<"$delta"
            log "$(printf '[shadow %d/%d] %-10s %9.1f tps %7.3f ms  comparisons %s (match %s, mismatch %s, other %s) dropped %s drain %ss  cores: pgbench %s postgres %s proxy %s other %s idle %s' \
                "$n" "$total" "$cfg" "$RUN_TPS" "$RUN_LAT" "$cmp" "$m" "$mm" "$oth" "$qf" "$drain" "$cb" "$cpg" "$cpx" "$cot" "$cid")"
            ((mm == 0)) || log "warning: $mm mismatch(es) in an A/A comparison; see the 'shadow mismatch' lines of pgshadow-$cfg.log"
            sleep "$PAUSE"
        done
    done
}

# ---------------------------------------------------------------- catalog lookups
# The key counters of one scrape of port $1: "lookups seconds relations".
key_totals() {
    local body
    body=$(scrape_metrics "$1") || return 1
    awk '
        /^#/ || NF < 2 { next }
        { key = $1; v = $NF + 0 }
        key == "pgshadow_key_lookup_seconds_count" { n += v }
        key == "pgshadow_key_lookup_seconds_sum" { s += v }
        key == "pgshadow_key_lookup_relations_total" { r += v }
        END { printf "%.0f %.6f %.0f\n", n, s, r }' <<<"$body"
}
# key_delta BEFORE AFTER: "lookups relations ms_per_lookup ms_per_relation".
key_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        n = y[1] - x[1]; r = y[3] - x[3]; ms = (y[2] - x[2]) * 1000
        printf "%d\t%d\t%.3f\t%.3f\n", n, r, (n > 0 ? ms / n : 0), (r > 0 ? ms / r : 0) }'
}
KEY_RESULTS=$WORK/results-keys.tsv
# Through the sample_rate 1.0 instance: each fresh relation in a statement
# of its own, the shadow idle in between (so every lookup asks for one
# relation), then one statement over ten fresh relations (one lookup for
# ten). A relation's key is looked up once, then cached for
# tiebreak.key_cache_seconds.
key_lookup_part() {
    local port=${TARGET_PORT[rate-1]} admin=${ADMIN_PORT[rate-1]} before after n tables=""
    printf 'case\tlookups\trelations\tms_per_lookup\tms_per_relation\n' >"$KEY_RESULTS"
    log "catalog lookups: $KEY_RELATIONS statements over one fresh relation each"
    wait_drained "$admin" >/dev/null
    before=$(key_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics"
    for ((n = 1; n <= KEY_RELATIONS; n++)); do
        "$PSQL" -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$DB" \
            -c "SELECT * FROM keycost_$n ORDER BY day" >/dev/null
        wait_drained "$admin" >/dev/null
    done
    after=$(key_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics"
    printf 'one relation per statement\t%s\n' "$(key_delta "$before" "$after")" >>"$KEY_RESULTS"
    for ((n = 1; n <= 10; n++)); do tables+="${tables:+, }keyjoin_$n"; done
    log "catalog lookups: one statement over ten fresh relations"
    before=$after
    "$PSQL" -X -q -h 127.0.0.1 -p "$port" -U postgres -d "$DB" \
        -c "SELECT * FROM $tables WHERE false ORDER BY 1" >/dev/null
    wait_drained "$admin" >/dev/null
    after=$(key_totals "$admin") || die "cannot scrape http://127.0.0.1:$admin/metrics"
    printf 'ten relations in one statement\t%s\n' "$(key_delta "$before" "$after")" >>"$KEY_RESULTS"
}

[[ -z $RUN_RELAY ]] || relay_part
if [[ -n $RUN_SHADOW ]]; then
    NO_PERF=1 # perf stat is for the relay part's proxy profile
    shadow_part
    ((KEY_RELATIONS == 0)) || key_lookup_part
fi
if [[ -n $RUN_TLS ]]; then
    tls_facts
    tls_part
fi

# ---------------------------------------------------------------- report
relay_report() {
    echo "## pgbench -S: direct vs PgBouncer (session) vs pgshadow"
    echo
    printf '%s\n' "${FACTS[@]}" "${RELAY_FACTS[@]}"
    echo
    awk -F'\t' '
        # Median of the space-separated numbers in v.
        function median(v,    a, n, i, j, x) {
          n = split(v, a, " ")
          for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
          return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR == 1 { next }
        { key = $1 SUBSEP $2 SUBSEP $3
          if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; order[++n] = $1 SUBSEP $2 }
          tps[key] = tps[key] " " $5; lat[key] = lat[key] " " $6 }
        END {
          print "| mode | clients | direct TPS | pgbouncer TPS | pgshadow TPS | direct lat ms | pgbouncer lat ms | pgshadow lat ms | pgshadow/direct | pgshadow/pgbouncer |"
          print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          for (i = 1; i <= n; i++) {
            split(order[i], k, SUBSEP)
            d = order[i] SUBSEP "direct"; b = order[i] SUBSEP "pgbouncer"; s = order[i] SUBSEP "pgshadow"
            td = median(tps[d]); tb = median(tps[b]); ts = median(tps[s])
            printf "| %s | %s | %.0f | %.0f | %.0f | %.3f | %.3f | %.3f | %.2f | %.2f |\n",
              k[1], k[2], td, tb, ts, median(lat[d]), median(lat[b]), median(lat[s]),
              ts / td, ts / tb
          }
        }' "$RESULTS"
    echo
    echo "TPS and average latency are the median over $ROUNDS run(s) of ${SECONDS_PER_RUN}s per target and cell; TPS excludes connection set-up (pgbench ≥ 14). Ratios divide the median TPS."
    echo
    awk -F'\t' -v limit="$NOISE_CORES" '
        NR > 1 && $11 > limit { noisy++; list = list sprintf("%s%s c=%s %s round %s (%.2f)", (noisy > 1 ? ", " : ""), $1, $2, $3, $4, $11) }
        NR > 1 { runs++ }
        END {
          if (noisy) printf "**Noise warning:** in %d of %d runs, more than %.2f cores were busy outside pgbench, PostgreSQL and the proxy (something else ran on the machine): %s.\n", noisy, runs, limit, list
          else printf "No run saw more than %.2f cores busy outside pgbench, PostgreSQL and the proxy.\n", limit
        }' "$RESULTS"
    echo
    echo "### CPU split (mean cores busy during the runs) and per-round TPS"
    echo
    echo "\"other\" is machine CPU not used by pgbench, PostgreSQL or the proxy (kernel softirq for loopback TCP, and anything else running on the machine); \"proxy µs/txn\" is the proxy process's CPU time per transaction."
    echo
    awk -F'\t' '
        NR == 1 { next }
        { cell = $1 SUBSEP $2; key = cell SUBSEP $3
          if (!(cell in seen)) { seen[cell] = 1; order[++n] = cell }
          r[key] = r[key] (r[key] == "" ? "" : " / ") sprintf("%.0f", $5)
          for (c = 8; c <= 14; c++) s[key, c] += $c
          runs[key]++ }
        END {
          print "| mode | clients | target | TPS per round | pgbench | postgres | proxy | other | idle | steal | proxy µs/txn |"
          print "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
          split("direct pgbouncer pgshadow", targets, " ")
          for (i = 1; i <= n; i++) {
            split(order[i], k, SUBSEP)
            for (t = 1; t <= 3; t++) {
              key = order[i] SUBSEP targets[t]; m = runs[key]
              if (m == 0) continue
              proxy = (t == 1) ? "–" : sprintf("%.2f", s[key, 10] / m)
              us = (t == 1) ? "–" : sprintf("%.1f", s[key, 14] / m)
              printf "| %s | %s | %s | %s | %.2f | %.2f | %s | %.2f | %.2f | %.2f | %s |\n",
                k[1], k[2], targets[t], r[key], s[key, 8] / m, s[key, 9] / m, proxy,
                s[key, 11] / m, s[key, 12] / m, s[key, 13] / m, us
            }
          }
        }' "$RESULTS"
    [[ -n $PERF ]] || return 0
    echo
    echo "### Proxy system calls per transaction (perf stat, BENCH_PERF=1)"
    echo
    echo "Counted in the proxy process only, mean over the rounds. reads = read + recvfrom, writes = write + writev + sendto + sendmsg, epoll = epoll_wait + epoll_pwait. pgbench -S sends 1 statement per transaction (simple: Query; extended: Parse/Bind/Describe/Execute/Sync; prepared: Bind/Describe/Execute/Sync), and each reply arrives in one piece, so the floor is one read and one write per direction."
    echo
    awk -F'\t' '
        NR == 1 { next }
        { cell = $1 SUBSEP $2; key = cell SUBSEP $3
          if (!(cell in seen)) { seen[cell] = 1; order[++n] = cell }
          if ($15 == "") next
          for (c = 15; c <= 20; c++) s[key, c] += $c
          runs[key]++ }
        END {
          print "| mode | clients | proxy | ctx switches | syscalls | reads | writes | epoll | futex |"
          print "|---|---:|---|---:|---:|---:|---:|---:|---:|"
          split("pgbouncer pgshadow", targets, " ")
          for (i = 1; i <= n; i++) {
            split(order[i], k, SUBSEP)
            for (t = 1; t <= 2; t++) {
              key = order[i] SUBSEP targets[t]; m = runs[key]
              if (m == 0) continue
              printf "| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f |\n", k[1], k[2], targets[t],
                s[key, 15] / m, s[key, 16] / m, s[key, 17] / m, s[key, 18] / m, s[key, 19] / m, s[key, 20] / m
            }
          }
        }' "$RESULTS"
}

shadow_report() {
    echo "## Shadow cost: pgbench -S -M $SHADOW_MODE -c $SHADOW_CLIENTS against pgshadow, shadow off and on"
    echo
    [[ -n $RUN_RELAY ]] || printf '%s\n' "${FACTS[@]}"
    printf '%s\n' "${SHADOW_FACTS[@]}"
    echo
    awk -F'\t' -v order="${SHADOW_CONFIGS[*]}" \
        -v labels="$(for c in "${SHADOW_CONFIGS[@]}"; do printf '%s\t' "${SHADOW_LABEL[$c]}"; done)" '
        function median(v,    a, n, i, j, x) {
          n = split(v, a, " ")
          for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
          return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function verdict(ok) { return ok ? "**PASS**" : "**FAIL**" }
        NR == 1 { next }
        { tps[$1] = tps[$1] " " $3; lat[$1] = lat[$1] " " $4; cmp[$1] = cmp[$1] " " $13
          round_tps[$1, $2] = $3; if ($2 + 0 > rounds) rounds = $2 + 0
          drop[$1] = drop[$1] " " $17; mism[$1] += $15; oth[$1] += $16; runs[$1]++
          drops[$1] = drops[$1] (drops[$1] == "" ? "" : " / ") $17
          if ($17 + 0 == 0) nodrop[$1]++
          if ($2 + 0 > 0 && $13 + 0 == 0) nocmp[$1]++
          if ($1 != "shadow-off") { allmism += $15; alloth += $16 } }
        END {
          n = split(order, cfg, " "); split(labels, lab, "\t")
          base = cfg[1]; bt = median(tps[base]); bl = median(lat[base])
          print "| configuration | TPS | avg latency ms | TPS vs shadow off | paired TPS ratio (mean ± s.e.) | latency vs shadow off | comparisons per run | mismatches (all runs) | dropped per run |"
          print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
          for (i = 1; i <= n; i++) {
            c = cfg[i]; if (!(c in runs)) continue
            t = median(tps[c]); l = median(lat[c])
            rt[c] = t / bt; rl[c] = l / bl
            # Paired: each round ran every configuration back to back, so
            # a slow minute of the machine hits both sides of a ratio.
            k = 0; sum = 0; sq = 0
            for (r = 1; r <= rounds; r++) {
              if (!((c, r) in round_tps) || !((base, r) in round_tps) || round_tps[base, r] + 0 == 0) continue
              x = round_tps[c, r] / round_tps[base, r]; k++; sum += x; sq += x * x
            }
            pm[c] = k ? sum / k : 0
            pse[c] = k > 1 ? sqrt((sq - sum * sum / k) / (k - 1) / k) : 0
            printf "| %s | %.0f | %.3f | %.3f | %.3f ± %.3f | %.3f | %.0f | %d | %.0f |\n", lab[i], t, l, rt[c], pm[c], pse[c], rl[c],
              median(cmp[c]), mism[c], median(drop[c])
          }
          print ""
          printf "TPS, average latency, comparisons and dropped samples (`pgshadow_skipped_total{reason=\"queue_full\"}`) are the median over the %d run(s) of each configuration; mismatches are summed over all runs; the ratios divide the medians. The paired ratio is the mean over the rounds of (TPS of this configuration / TPS with the shadow off, in the same round), with its standard error: the rounds run the configurations back to back, so it cancels slow drifts of the machine that the medians still contain.\n", runs[base]
          print ""
          print "Targets (reported only: the script does not fail on them):"
          print ""
          printf "- sample_rate 0.01: TPS ≥ 0.97 × shadow off, by the paired per-round ratio: %.3f × (± %.3f; ratio of medians %.3f ×) → %s\n", pm["rate-0.01"], pse["rate-0.01"], rt["rate-0.01"], verdict(pm["rate-0.01"] >= 0.97)
          printf "- sample_rate 1.0: average latency ≤ 1.5 × shadow off: %.3f × → %s\n", rl["rate-1"], verdict(rl["rate-1"] <= 1.5)
          printf "- sample_rate 1.0: the excess is shed and counted (dropped > 0 in every run): dropped %s → %s\n", drops["rate-1"], verdict(runs["rate-1"] > 0 && nodrop["rate-1"] == 0)
          printf "- sample_rate 0.01 and 1.0: every run compared samples (comparisons > 0; none means the shadow is off, e.g. refused its role): %d and %d runs without → %s\n", nocmp["rate-0.01"], nocmp["rate-1"], verdict(runs["rate-1"] > 0 && nocmp["rate-0.01"] + nocmp["rate-1"] == 0)
          printf "- A/A (views on the same tables): 0 mismatches over all shadow-on runs: %d mismatches, %d other outcomes (errors, timeouts) → %s\n", allmism, alloth, verdict(allmism == 0)
        }' "$SHADOW_RESULTS"
    echo
    awk -F'\t' -v limit="$NOISE_CORES" '
        NR > 1 && $9 > limit { noisy++; list = list sprintf("%s%s round %s (%.2f)", (noisy > 1 ? ", " : ""), $1, $2, $9) }
        NR > 1 { runs++ }
        END {
          if (noisy) printf "**Noise warning:** in %d of %d runs, more than %.2f cores were busy outside pgbench, PostgreSQL and the proxy (something else ran on the machine): %s.\n", noisy, runs, limit, list
          else printf "No run saw more than %.2f cores busy outside pgbench, PostgreSQL and the proxy.\n", limit
        }' "$SHADOW_RESULTS"
    echo
    echo "### Shadow counters per run"
    echo
    echo "From the instance's /metrics, before the run → after the drain. queries = \`pgshadow_queries_total\` (statements the clients executed; not counted with the shadow off); comparisons = \`pgshadow_comparisons_total\`, of which match / mismatch / other (errors, timeouts); dropped = \`skipped_total{reason=\"queue_full\"}\`; not sampled = \`skipped_total{reason=\"not_sampled\"}\`; cmp/s = comparisons finished while pgbench ran, per second; shadow ms = mean time of the old + the new query per comparison (\`pgshadow_shadow_duration_seconds\`); drain = seconds until the shadow was idle after pgbench exited."
    echo
    awk -F'\t' -v order="${SHADOW_CONFIGS[*]}" -v secs="$SECONDS_PER_RUN" \
        -v labels="$(for c in "${SHADOW_CONFIGS[@]}"; do printf '%s\t' "${SHADOW_LABEL[$c]}"; done)" '
        NR == 1 { next }
        { row[$1] = row[$1] sprintf("| %%s | %s | %.0f | %.3f | %d | %d | %d | %d | %d | %d | %d | %.0f | %.2f | %.1f |\n",
            $2, $3, $4, $18, $13, $14, $15, $16, $17, $19, $20 / secs, $21, $22) }
        END {
          n = split(order, cfg, " "); split(labels, lab, "\t")
          print "| configuration | round | TPS | lat ms | queries | comparisons | match | mismatch | other | dropped | not sampled | cmp/s | shadow ms | drain s |"
          print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          for (i = 1; i <= n; i++) {
            k = split(row[cfg[i]], lines, "\n")
            for (j = 1; j < k; j++) printf lines[j] "\n", lab[i]
          }
        }' "$SHADOW_RESULTS"
    echo
    echo "### CPU split (mean cores busy during the runs) and per-round TPS"
    echo
    echo "\"postgres\" includes the shadow's own backends (up to max_in_flight = 2 connections per shadow-on instance); \"proxy\" is the pgshadow process, shadow workers included; \"proxy µs/txn\" is its CPU time per pgbench transaction."
    echo
    awk -F'\t' -v order="${SHADOW_CONFIGS[*]}" \
        -v labels="$(for c in "${SHADOW_CONFIGS[@]}"; do printf '%s\t' "${SHADOW_LABEL[$c]}"; done)" '
        NR == 1 { next }
        { r[$1] = r[$1] (r[$1] == "" ? "" : " / ") sprintf("%.0f", $3)
          for (c = 6; c <= 12; c++) s[$1, c] += $c
          runs[$1]++ }
        END {
          n = split(order, cfg, " "); split(labels, lab, "\t")
          print "| configuration | TPS per round | pgbench | postgres | proxy | other | idle | steal | proxy µs/txn |"
          print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
          for (i = 1; i <= n; i++) {
            k = cfg[i]; m = runs[k]; if (m == 0) continue
            printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", lab[i], r[k],
              s[k, 6] / m, s[k, 7] / m, s[k, 8] / m, s[k, 9] / m, s[k, 10] / m, s[k, 11] / m, s[k, 12] / m
          }
        }' "$SHADOW_RESULTS"
}

keys_report() {
    echo
    echo "### One-time catalog lookup of relation keys (sample_rate 1.0 instance)"
    echo
    echo "The shadow looks each relation's key up in the catalog once (one READ ONLY transaction on a shadow connection: \`to_regclass\` and \`pg_index\` under the old and the new search_path; all relations a batch needs in one round trip), then caches it for \`tiebreak.key_cache_seconds\`. From \`pgshadow_key_lookup_seconds\` and \`pgshadow_key_lookup_relations_total\`; the relations have composite primary keys and a second unique index."
    echo
    awk -F'\t' '
        NR == 1 { print "| case | lookups | relations | ms per lookup | ms per relation |"; print "|---|---:|---:|---:|---:|"; next }
        { printf "| %s | %d | %d | %.3f | %.3f |\n", $1, $2, $3, $4, $5 }' "$KEY_RESULTS"
}

report() {
    [[ -z $RUN_RELAY ]] || relay_report
    [[ -z $RUN_RELAY || -z $RUN_SHADOW ]] || echo
    [[ -z $RUN_SHADOW ]] || shadow_report
    [[ -z $RUN_SHADOW || $KEY_RELATIONS == 0 ]] || keys_report
    [[ -z $RUN_TLS || (-z $RUN_RELAY && -z $RUN_SHADOW) ]] || echo
    [[ -z $RUN_TLS ]] || tls_report
}

REPORT=$(report)
printf '%s\n' "$REPORT"
if [[ -n $MARKDOWN_OUT ]]; then
    printf '%s\n' "$REPORT" >"$MARKDOWN_OUT"
    log "report written to $MARKDOWN_OUT"
fi
if [[ -n $RAW_OUT ]]; then
    if [[ -n $RUN_RELAY ]]; then
        cp "$RESULTS" "$RAW_OUT"
        log "raw results written to $RAW_OUT"
    fi
    if [[ -n $RUN_SHADOW ]]; then
        SHADOW_RAW_OUT=${RAW_OUT%.tsv}-shadow.tsv
        cp "$SHADOW_RESULTS" "$SHADOW_RAW_OUT"
        log "raw results of the shadow part written to $SHADOW_RAW_OUT"
    fi
    if [[ -n $RUN_TLS ]]; then
        cp "$TLS_RESULTS" "${RAW_OUT%.tsv}-tls.tsv"
        log "raw results of the TLS part written to ${RAW_OUT%.tsv}-tls.tsv"
    fi
fi
