# The TLS part of scripts/bench.sh (sourced by it; not run on its own).
#
#   tls     pgbench -S -M prepared at 16 and 64 clients over TLS on both
#           legs: pgbench → proxy with sslmode=require, proxy → PostgreSQL
#           verifying the server's certificate (verify-full), against
#             pgbouncer-tls  PgBouncer, client_tls_sslmode = require,
#                            server_tls_sslmode = verify-full;
#             pgshadow-tls   pgshadow, listen.tls_mode = "require",
#                            upstream.tls = "verify-full" (shadow off);
#           in the same run, rounds in alternating order, and prints the
#           ratio pgshadow / PgBouncer (median and paired per round).
#
# Certificates (a CA, the server's and the proxies' for 127.0.0.1 and
# localhost) are made with openssl in the work directory.

readonly TLS_TARGETS=(pgbouncer-tls pgshadow-tls)
TLS_CLIENTS_LIST=${BENCH_TLS_CLIENTS:-16 64}
TLS_MODE=${BENCH_TLS_MODE:-prepared}
read -r -a TLS_CLIENTS <<<"$TLS_CLIENTS_LIST"

tls_check_args() {
    ((${#TLS_CLIENTS[@]} > 0)) || die "BENCH_TLS_CLIENTS is empty"
    local c
    for c in "${TLS_CLIENTS[@]}"; do
        is_uint "$c" && ((c > 0)) || die "BENCH_TLS_CLIENTS must hold positive integers, got '$c'"
    done
    case $TLS_MODE in simple | extended | prepared) ;; *) die "BENCH_TLS_MODE: unknown mode '$TLS_MODE'" ;; esac
    command -v openssl >/dev/null || die "openssl not found (the TLS part makes its certificates with it): apt-get install -y openssl"
}

# Makes ca.crt, server.{crt,key} (PostgreSQL) and proxy.{crt,key} (both
# proxies) in $WORK/tls, all for 127.0.0.1 and localhost.
tls_make_certs() {
    local d=$WORK/tls name
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=pgshadow bench CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null ||
        die "openssl could not make the CA"
    for name in server proxy; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=localhost" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null ||
            die "openssl could not make the $name key"
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/$name.ext"
        openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null ||
            die "openssl could not sign the $name certificate"
    done
    chmod 600 "$d"/*.key
    [[ ${#AS_SERVER_USER[@]} -eq 0 ]] || chown -R postgres: "$d"
    # pgshadow may run as root, PostgreSQL and PgBouncer as postgres: all
    # read the files; only their owner reads the keys.
    chmod 755 "$d"
    TLS_DIR=$d
}

# PostgreSQL settings that turn TLS on (plain connections still work: the
# other parts use them).
tls_pg_settings() {
    printf '%s\n' -c ssl=on -c "ssl_cert_file=$TLS_DIR/server.crt" -c "ssl_key_file=$TLS_DIR/server.key"
}

select_1_tls() { PGSSLMODE=require select_1 "$1"; }

tls_start_pgbouncer() {
    local port pid
    take_port port
    {
        pgbouncer_ini pgbouncer-tls "$port"
        cat <<EOF2
client_tls_sslmode = require
client_tls_cert_file = $TLS_DIR/proxy.crt
client_tls_key_file = $TLS_DIR/proxy.key
server_tls_sslmode = verify-full
server_tls_ca_file = $TLS_DIR/ca.crt
EOF2
    } >"$WORK/pgbouncer-tls.ini"
    printf '"postgres" ""\n' >"$WORK/userlist.txt"
    [[ ${#AS_SERVER_USER[@]} -eq 0 ]] || chown postgres: "$WORK/userlist.txt" "$WORK/pgbouncer-tls.ini"
    log "starting PgBouncer (TLS) on 127.0.0.1:$port"
    (cd "$WORK" && exec "${AS_SERVER_USER[@]}" "$PGBOUNCER" -q "$WORK/pgbouncer-tls.ini" >"$WORK/pgbouncer-tls.stderr" 2>&1) &
    pid=$!
    TLS_BOUNCER_PID=$pid
    wait_until "$pid" 30 "PgBouncer (TLS)" select_1_tls "$port"
    TARGET_PORT[pgbouncer-tls]=$port
    TARGET_PID[pgbouncer-tls]=$pid
    TARGET_SSLMODE[pgbouncer-tls]=require
}

tls_start_pgshadow() {
    start_pgshadow pgshadow-tls "$(shadow_section shadow-off)" "\
tls_cert = \"$TLS_DIR/proxy.crt\"
tls_key = \"$TLS_DIR/proxy.key\"
tls_mode = \"require\"" "\
tls = \"verify-full\"
tls_root_cert = \"$TLS_DIR/ca.crt\"" select_1_tls
    TARGET_SSLMODE[pgshadow-tls]=require
}

TLS_FACTS=()
tls_facts() {
    TLS_FACTS=(
        "- TLS part: pgbench -n -S -M $TLS_MODE -T $SECONDS_PER_RUN with PGSSLMODE=require against PgBouncer (client_tls_sslmode = require, server_tls_sslmode = verify-full) and pgshadow (listen.tls_mode = \"require\", upstream.tls = \"verify-full\", shadow off); PostgreSQL with ssl = on; ECDSA P-256 certificates from one test CA; $ROUNDS round(s) per client count with the order alternating, ${WARMUP}s warm-up per target"
        "- TLS libraries: PgBouncer with $(ldd "$PGBOUNCER" 2>/dev/null | awk '/libssl/ { print $1; exit }'), pgshadow with rustls (ring); PostgreSQL $(ldd "$PG_BIN/postgres" 2>/dev/null | awk '/libssl/ { print $1; exit }')"
    )
}

TLS_RESULTS=""
tls_part() {
    local clients round i target n=0 total=$((${#TLS_CLIENTS[@]} * ROUNDS * 2)) cb cpg cpx cot cid
    TLS_RESULTS=$WORK/results-tls.tsv
    if ((WARMUP > 0)); then
        for target in "${TLS_TARGETS[@]}"; do
            log "TLS warm-up: $target, -M $TLS_MODE -c ${TLS_CLIENTS[-1]} for ${WARMUP}s"
            run_pgbench "$target" "$TLS_MODE" "${TLS_CLIENTS[-1]}" "$WARMUP"
            sleep "$PAUSE"
        done
    fi
    printf 'mode\tclients\ttarget\tround\ttps\tlat_ms\ttxns\tcpu_pgbench\tcpu_postgres\tcpu_proxy\tcpu_other\tcpu_idle\tcpu_steal\tproxy_us_per_txn\n' >"$TLS_RESULTS"
    for clients in "${TLS_CLIENTS[@]}"; do
        for ((round = 0; round < ROUNDS; round++)); do
            for ((i = 0; i < 2; i++)); do
                target=${TLS_TARGETS[$(((i + round) % 2))]}
                n=$((n + 1))
                NO_PERF=1 run_pgbench "$target" "$TLS_MODE" "$clients" "$SECONDS_PER_RUN"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TLS_MODE" "$clients" "$target" $((round + 1)) \
                    "$RUN_TPS" "$RUN_LAT" "$RUN_TXNS" "$RUN_CPU" >>"$TLS_RESULTS"
                IFS=$'\t' read -r cb cpg cpx cot cid _ <<<"$RUN_CPU"
                log "$(printf '[tls %d/%d] c=%-3s %-13s %9.1f tps %7.3f ms  cores: pgbench %s postgres %s proxy %s other %s idle %s' \
                    "$n" "$total" "$clients" "$target" "$RUN_TPS" "$RUN_LAT" "$cb" "$cpg" "$cpx" "$cot" "$cid")"
                sleep "$PAUSE"
            done
        done
    done
}

tls_report() {
    echo "## TLS on both legs: pgbench -S -M $TLS_MODE, PgBouncer vs pgshadow"
    echo
    [[ -n $RUN_RELAY || -n $RUN_SHADOW ]] || printf '%s\n' "${FACTS[@]}"
    printf '%s\n' "${TLS_FACTS[@]}"
    echo
    awk -F'\t' '
        function median(v,    a, n, i, j, x) {
          n = split(v, a, " ")
          for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
          return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR == 1 { next }
        { key = $2 SUBSEP $3
          if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 }
          tps[key] = tps[key] " " $5; lat[key] = lat[key] " " $6; us[key] += $14; runs[key]++
          round_tps[key, $4] = $5; if ($4 + 0 > rounds) rounds = $4 + 0 }
        END {
          print "| clients | pgbouncer TLS TPS | pgshadow TLS TPS | pgbouncer lat ms | pgshadow lat ms | pgshadow/pgbouncer (medians) | paired ratio (mean ± s.e.) | proxy µs/txn pgbouncer | proxy µs/txn pgshadow | target |"
          print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
          for (i = 1; i <= n; i++) {
            c = order[i]; b = c SUBSEP "pgbouncer-tls"; s = c SUBSEP "pgshadow-tls"
            tb = median(tps[b]); ts = median(tps[s])
            k = 0; sum = 0; sq = 0
            for (r = 1; r <= rounds; r++) {
              if (!((b, r) in round_tps) || !((s, r) in round_tps) || round_tps[b, r] + 0 == 0) continue
              x = round_tps[s, r] / round_tps[b, r]; k++; sum += x; sq += x * x
            }
            pm = k ? sum / k : 0; pse = k > 1 ? sqrt((sq - sum * sum / k) / (k - 1) / k) : 0
            printf "| %s | %.0f | %.0f | %.3f | %.3f | %.3f | %.3f ± %.3f | %.1f | %.1f | %s |\n",
              c, tb, ts, median(lat[b]), median(lat[s]), ts / tb, pm, pse,
              us[b] / runs[b], us[s] / runs[s], (pm >= 1.0 ? "**PASS** (≥ 1)" : "**FAIL** (< 1)")
          }
        }' "$TLS_RESULTS"
    echo
    echo "Target (reported only): pgshadow ≥ PgBouncer, by the paired per-round ratio (each round runs both back to back)."
}
