"""Server memory per idle WebSocket: opens N initialised graphql-transport-ws sockets (by
hand, standard library only) to a running storefront and prints its VmRSS before and after.

    WS_PING_INTERVAL_SECS=3600 WS_IDLE_TIMEOUT_SECS=86400 WS_MAX_CONNECTIONS_PER_ADDRESS=100000 \\
    WS_INIT_TIMEOUT_SECS=300 storefront serve &
    python3 bench/ws_memory.py 127.0.0.1 8000 $! 1000
"""
import base64
import json
import os
import socket
import struct
import sys
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def text_frame(text):
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(data) < 126:
        head += bytes([0x80 | len(data)])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", len(data))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def open_socket(host, port):
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    if b" 101 " not in answer.split(b"\r\n")[0]:
        raise RuntimeError(answer[:200])
    sock.sendall(text_frame(json.dumps({"type": "connection_init", "payload": {}})))
    return sock


def main():
    host, port, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # The first sockets' one-off costs (allocator arenas, lazily built state) are not counted.
    warm = [open_socket(host, port) for _ in range(20)]
    time.sleep(1)
    before = rss_kb(pid)
    sockets = [open_socket(host, port) for _ in range(n)]
    for sock in sockets:
        sock.settimeout(10)
        if b"connection_ack" not in sock.recv(4096):
            raise RuntimeError("no connection_ack")
    time.sleep(2)
    after = rss_kb(pid)
    print(f"{n} sockets: VmRSS {before} kB -> {after} kB, {(after - before) / n:.1f} kB each")
    del warm


if __name__ == "__main__":
    main()
