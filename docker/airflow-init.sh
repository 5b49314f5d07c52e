#!/usr/bin/env bash
# Service airflow-init of docker-compose.yaml: a one-shot job that every other Airflow service waits
# for. Safe to re-run (it runs on every `docker compose up`):
#   1. the secrets every Airflow component must share (JWT signing key, API secret key, Fernet key),
#      generated once into the airflow-secrets volume; the components read them through
#      AIRFLOW__..._CMD variables, so no secret is ever written in a file of the repository;
#   2. the metadata database schema (airflow db migrate);
#   3. the admin's password for the simple auth manager when AIRFLOW_ADMIN_PASSWORD is set (empty:
#      the api-server generates one on first start and prints it in its log);
#   4. the Airflow pool "amberflo" for tasks that call the Amberflo API.
set -euo pipefail

secrets_dir=/opt/airflow/secrets
umask 077

# new_secret NAME PYTHON: write the secret once (no trailing newline: Airflow uses the command's
# output as it is); an existing one is kept, or tokens and encrypted values would stop working.
new_secret() {
  local file="$secrets_dir/$1"
  if [ ! -s "$file" ]; then
    python -c "$2" > "$file.tmp"
    mv "$file.tmp" "$file"
    echo "airflow-init: generated $file"
  fi
}
new_secret jwt_secret 'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(48))'
new_secret api_secret_key 'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(48))'
new_secret fernet_key 'import sys; from cryptography.fernet import Fernet; sys.stdout.write(Fernet.generate_key().decode())'

echo "airflow-init: airflow db migrate"
airflow db migrate

if [ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
  python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
passwords = json.loads(text or "{}")
passwords[os.environ["AIRFLOW_ADMIN_USERNAME"]] = os.environ["AIRFLOW_ADMIN_PASSWORD"]
path.write_text(json.dumps(passwords) + "\n", encoding="utf-8")
print(f"airflow-init: password of {os.environ['AIRFLOW_ADMIN_USERNAME']!r} set from AIRFLOW_ADMIN_PASSWORD")
PY
else
  echo "airflow-init: AIRFLOW_ADMIN_PASSWORD is empty: the api-server generates the admin's password" \
       "(docker compose logs airflow-apiserver | grep 'Password for user')"
fi

echo "airflow-init: pool amberflo"
airflow pools set amberflo 4 "Amberflo API"

airflow version
