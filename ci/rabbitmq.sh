#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672 (the AMQP tests in
# tests/amqp.rs use it with the default guest/guest account): installs
# rabbitmq-server with apt if it is missing, starts it if it is not running,
# and waits until it accepts connections. Idempotent.
set -euo pipefail

answers() {
    # bash's /dev/tcp: no extra tool needed.
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

if answers; then
    echo "RabbitMQ answers on 127.0.0.1:5672"
    exit 0
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
        echo "RabbitMQ answers on 127.0.0.1:5672"
        exit 0
    fi
    sleep 1
done
echo "RabbitMQ did not come up on 127.0.0.1:5672 within 120 s" >&2
exit 1
