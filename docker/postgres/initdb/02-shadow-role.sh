#!/usr/bin/env bash
# Creates the role pgshadow's shadow connections log in as (shadow.user in
# docker/pgshadow.toml): it may read both schemas and nothing else, and
# every transaction it starts is read-only. Its password comes from
# PGSHADOW_SHADOW_PASSWORD, the same variable pgshadow reads
# (shadow.password_env). Run once by the postgres image, after
# 01-schemas.sql, when its data volume is empty.
set -Eeo pipefail

if [ -z "${PGSHADOW_SHADOW_PASSWORD:-}" ]; then
    echo "02-shadow-role.sh: PGSHADOW_SHADOW_PASSWORD is not set" >&2
    exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc \
     --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
     -v shadow_password="$PGSHADOW_SHADOW_PASSWORD" <<'SQL'
CREATE ROLE pgshadow LOGIN PASSWORD :'shadow_password';
ALTER ROLE pgshadow SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA public, v2 TO pgshadow;
GRANT SELECT ON ALL TABLES IN SCHEMA public, v2 TO pgshadow;
SQL
