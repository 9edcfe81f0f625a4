#!/usr/bin/env python3
"""A switchboard client in plain Python (standard library only), written from
PROTOCOL.md alone: it proves the spec is enough for another language.

Usage: python3 examples/python_client.py CONNECTOR ROUTE [PARAMS_JSON]
Prints the response as JSON; exits 1 on an error response.
Supports `unix` and `tcp` connectors and the `json` format.
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys


def b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64encode(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_connector(text):
    prefix, _, body = text.strip().partition(":")
    if prefix != "sb1":
        raise ValueError("not a version 1 connector string")
    return json.loads(b64decode(body))


class Connection:
    def __init__(self, connector, client_id="python"):
        kind, address = connector["k"], connector["a"]
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(address)
        elif kind == "tcp":
            host, _, port = address.rpartition(":")
            self.sock = socket.create_connection((host.strip("[]"), int(port)))
        else:
            raise ValueError(f"unsupported kind {kind}")
        self.next_id = 1
        self._handshake(connector.get("s"), client_id)

    def _send(self, body):
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def _recv(self):
        (length,) = struct.unpack("<I", self._recv_exact(4))
        return self._recv_exact(length)

    def _handshake(self, secret_b64, client_id):
        secret = b64decode(secret_b64) if secret_b64 else None
        client_nonce = os.urandom(32)
        # This client sends one request at a time and handles no requests
        # from the server, so it accepts little in flight.
        hello = {
            "switchboard": 4,
            "client_id": client_id,
            "formats": ["json"],
            "nonce": b64encode(client_nonce),
            "window": {"messages": 16, "bytes": 1 << 20},
        }
        self._send(json.dumps(hello).encode())
        challenge = json.loads(self._recv())
        if "error" in challenge:
            raise ConnectionError(f"refused: {challenge['error']}")
        answer = {}
        server_nonce = b64decode(challenge["nonce"])
        if secret:
            expected = hmac.new(secret, b"switchboard server proof\0" + client_nonce + server_nonce, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, b64decode(challenge["proof"])):
                self._send(json.dumps({"error": {"code": "auth_failed", "message": "bad server proof"}}).encode())
                raise ConnectionError("the server does not hold this connector's secret")
            proof = hmac.new(secret, b"switchboard client proof\0" + server_nonce + client_nonce, hashlib.sha256).digest()
            answer["proof"] = b64encode(proof)
        self._send(json.dumps(answer).encode())
        welcome = json.loads(self._recv())
        if not welcome.get("welcome"):
            raise ConnectionError(f"refused: {welcome.get('error')}")

    def request(self, route, params):
        request_id, self.next_id = self.next_id, self.next_id + 1
        route_bytes = route.encode()
        frame = struct.pack("<BQH", 1, request_id, len(route_bytes)) + route_bytes + json.dumps(params).encode()
        self._send(frame)
        while True:
            message = self._recv()
            kind = message[0]
            if kind == 3 and struct.unpack_from("<Q", message, 1)[0] == request_id:
                return json.loads(message[9:])
            if kind == 4 and struct.unpack_from("<Q", message, 1)[0] == request_id:
                code, length = struct.unpack_from("<iH", message, 9)
                raise RuntimeError(f"error {code}: {message[15:15 + length].decode()}")
            if kind == 7:
                self._send(bytes([8]))  # a ping: answer with a pong
            # Requests or notifications from the server are not handled here.


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    connection = Connection(load_connector(sys.argv[1]))
    try:
        print(json.dumps(connection.request(sys.argv[2], params)))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
