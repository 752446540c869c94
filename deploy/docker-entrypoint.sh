#!/bin/sh
# The container's start, before its command (`llm-gateway serve`):
# - LLM_GATEWAY_ENCRYPTION_KEYS_FILE (optional): a file holding the key ring, kept out of the data volume so a
#   copy of the database alone never comes with its key. Read into LLM_GATEWAY_ENCRYPTION_KEYS; written with a
#   new key (mode 0600) when it does not exist yet, as the embedded default writes /data/encryption.key.
# - LLM_GATEWAY_MIGRATE_ON_START (default true): `llm-gateway db upgrade` first, so a new image brings its schema
#   with it; false when migrations are run on their own (several gateways on one PostgreSQL, a release step).
set -eu

keys_file="${LLM_GATEWAY_ENCRYPTION_KEYS_FILE:-}"
if [ -z "${LLM_GATEWAY_ENCRYPTION_KEYS:-}" ] && [ -n "$keys_file" ]; then
    if [ ! -s "$keys_file" ]; then
        (umask 077 && llm-gateway keys generate > "$keys_file.new" && mv "$keys_file.new" "$keys_file")
        echo "llm-gateway: wrote a new encryption key to $keys_file (mode 0600); back it up" >&2
    fi
    LLM_GATEWAY_ENCRYPTION_KEYS="$(cat "$keys_file")"
    export LLM_GATEWAY_ENCRYPTION_KEYS
fi

case "${LLM_GATEWAY_MIGRATE_ON_START:-true}" in
    true | 1 | yes) llm-gateway db upgrade ;;
    false | 0 | no) ;;
    *)
        echo "llm-gateway: invalid setting LLM_GATEWAY_MIGRATE_ON_START: true or false" >&2
        exit 2
        ;;
esac

exec "$@"
