#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (the AMQP tests in
# tests/amqp/ use it with the default guest/guest account): installs
# rabbitmq-server with apt if it is missing, starts it if it is not running,
# and waits until it accepts connections. Idempotent.
set -euo pipefail

answers() {
    # bash's /dev/tcp: no extra tool needed.
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

# The port alone is not enough: a node whose database was damaged (a disk
# that filled up, say) still accepts TCP and then resets every connection.
healthy() {
    answers && timeout 30 rabbitmqctl -q list_vhosts >/dev/null 2>&1
}

if healthy; then
    echo "RabbitMQ answers on 127.0.0.1:5672"
    exit 0
fi
if answers; then
    # Up but broken: this machine's broker exists for tests, so start it
    # again on a fresh database (the old one is kept aside, not deleted).
    echo "== RabbitMQ answers but does not work: restarting it on a fresh database"
    timeout 60 rabbitmqctl -q shutdown >/dev/null 2>&1 || pkill -u rabbitmq beam.smp || true
    sleep 2
    if [ -d /var/lib/rabbitmq/mnesia ]; then
        mv /var/lib/rabbitmq/mnesia "/var/lib/rabbitmq/mnesia.broken-$(date +%s)"
    fi
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "== installing rabbitmq-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
if ! answers; then
    echo "== starting rabbitmq-server"
    # The package may have started it already; -detached fails harmlessly
    # if a node is up.
    rabbitmq-server -detached >/dev/null 2>&1 || true
fi
for _ in $(seq 1 120); do
    if answers; then
        # The port opens slightly before the node takes commands.
        rabbitmqctl -q await_startup >/dev/null 2>&1 || true
        if healthy; then
            echo "RabbitMQ answers on 127.0.0.1:5672"
            exit 0
        fi
    fi
    sleep 1
done
echo "RabbitMQ did not come up on 127.0.0.1:5672 within 120 s" >&2
exit 1
