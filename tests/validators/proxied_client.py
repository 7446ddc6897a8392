"""Clients behind a TCP load balancer: each of COUNT connections to
127.0.0.1:PORT begins with a PROXY protocol header (VERSION 1 or 2, or
none) naming CLIENT_IP, then carries one HTTP/1.1 request (over TLS for
https, trusting the CA file in $PROXIED_CA), with standard input as the
body of a POST. Prints each response's status code, or "closed" when the
server closed the connection without one.

usage: proxied_client.py VERSION SCHEME PORT CLIENT_IP METHOD PATH CONTENT_TYPE COUNT
"""
import ipaddress
import os
import socket
import ssl
import struct
import sys

version, scheme, port, client_ip, method, path, content_type, count = sys.argv[1:9]
port, count = int(port), int(count)
body = sys.stdin.buffer.read() if method == "POST" else b""
client = ipaddress.ip_address(client_ip)


def proxy_header():
    if version == "1":
        family = "TCP4" if client.version == 4 else "TCP6"
        local = "127.0.0.1" if client.version == 4 else "::1"
        return f"PROXY {family} {client} {local} 40000 {port}\r\n".encode()
    if version == "2":
        family, local = (0x11, ipaddress.ip_address("127.0.0.1")) if client.version == 4 else (0x21, ipaddress.ip_address("::1"))
        addresses = client.packed + local.packed + struct.pack("!HH", 40000, port)
        return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + struct.pack("!H", len(addresses)) + addresses
    return b""


for _ in range(count):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(proxy_header())
    try:
        if scheme == "https":
            context = ssl.create_default_context(cafile=os.environ["PROXIED_CA"])
            conn = context.wrap_socket(raw, server_hostname="localhost")
        else:
            conn = raw
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
        if content_type != "-":
            head += f"Content-Type: {content_type}\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    except (ssl.SSLError, ConnectionError):
        response = b""
    finally:
        raw.close()
    print(response.split(b" ", 2)[1].decode() if response.startswith(b"HTTP/1.1 ") else "closed", flush=True)
