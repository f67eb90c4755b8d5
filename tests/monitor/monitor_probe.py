#!/usr/bin/env python3
"""Misbehaving clients for ssm-monitor's robustness test (stdlib only). Prints what the server answered.
usage: monitor_probe.py PORT TOKEN CASE [--ca CERT]   (CASE: garbage, badhello, oversize, wrongch, truncated, silent,
       badtoken, badversion, slowviewer:SECONDS, httpnotoken, viewone)
--ca CERT: speak TLS to a `serve --cert/--key` server, verifying it against CERT for the name localhost."""
import socket, ssl, struct, sys, time, os, base64, json

argv = sys.argv[1:]
ca = None
if "--ca" in argv:
    i = argv.index("--ca")
    ca = argv[i + 1]
    del argv[i:i + 2]
port, token, case = int(argv[0]), argv[1], argv[2]

def frame(t, payload):
    return b"SM" + bytes([1, t]) + struct.pack("<I", len(payload)) + payload

def s16(b):
    return struct.pack("<H", len(b)) + b

def hello(sid, tok, ch, rate=250.0):
    p = struct.pack("<Hd", ch, rate) + s16(sid.encode()) + s16(tok.encode())
    for c in range(ch):
        p += s16(b"c%d" % c) + s16(b"uV")
    return frame(1, p)

def data(seq, frames, ch):
    return frame(2, struct.pack("<QqI", seq, 0, frames) + struct.pack("<%df" % (frames * ch), *([0.5] * (frames * ch))))

def answer(s, timeout=3.0):
    """Reads until the server closes; returns the error text if an error frame came, else a description."""
    s.settimeout(timeout)
    buf = b""
    t0 = time.time()
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
    except socket.timeout:
        return "TIMEOUT (server kept the connection open %.1fs)" % (time.time() - t0)
    except (ConnectionResetError, ssl.SSLError):  # over TLS a close without close_notify reads as an SSL error
        pass
    msgs = []
    while len(buf) >= 8:
        t, n = buf[3], struct.unpack("<I", buf[4:8])[0]
        p = buf[8:8 + n]
        buf = buf[8 + n:]
        if t == 4:
            msgs.append("ERROR: " + p[2:].decode(errors="replace"))
        elif t == 3:
            msgs.append("WELCOME %d" % struct.unpack("<Q", p)[0])
        else:
            msgs.append("TYPE %d" % t)
    return "; ".join(msgs) + " | CLOSED after %.2fs" % (time.time() - t0)

def ws_upgrade(s, path):
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s?token=%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, token, key)).encode())

def read_exact(s, n, buf):
    while len(buf) < n:
        b = s.recv(65536)
        if not b:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += b
    return buf[:n], buf[n:]

s = socket.create_connection(("127.0.0.1", port))
if ca:
    s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
if case == "garbage":
    s.sendall(os.urandom(4096).replace(b"SM", b"xx").replace(b"GET", b"xxx").lstrip(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ") or b"\0" * 64)
elif case == "badhello":
    h = hello("probe", token, 2)
    s.sendall(h[:8] + h[8:-3] + b"\xff\xff\xff")  # right length, corrupted tail (last unit claims 65535 bytes)
elif case == "oversize":
    s.sendall(b"SM\x01\x02" + struct.pack("<I", 1 << 30))
elif case == "wrongch":
    s.sendall(hello("probe-wrongch", token, 2) + data(0, 10, 3))
elif case == "truncated":
    d = data(0, 100, 2)
    s.sendall(hello("probe-trunc", token, 2) + d[: len(d) // 2])
    s.shutdown(socket.SHUT_WR)
elif case == "silent":
    pass  # never speaks
elif case == "badtoken":
    s.sendall(hello("probe-tok", token + "x", 1))
elif case == "badversion":
    s.sendall(b"SM\x02\x01" + struct.pack("<I", 0))
elif case == "httpnotoken":
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(3)
    print(s.recv(4096).split(b"\r\n")[0].decode())
    sys.exit(0)
elif case == "viewone":  # a viewer: the upgrade's status line, then what its first message is
    ws_upgrade(s, "/view")
    s.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(4096)
        if not b:
            sys.exit("closed during the upgrade: %r" % buf)
        buf += b
    head, buf = buf.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n")[0].decode()
    opcode, message, fin = None, b"", False
    while not fin:  # a message may come in fragments (continuation frames)
        h, buf = read_exact(s, 2, buf)
        fin, n = bool(h[0] & 0x80), h[1] & 0x7F
        if opcode is None:
            opcode = h[0] & 0x0F
        if n >= 126:
            ext, buf = read_exact(s, 2 if n == 126 else 8, buf)
            n = struct.unpack(">H" if n == 126 else ">Q", ext)[0]
        part, buf = read_exact(s, n, buf)
        message += part
    msg = json.loads(message.decode()) if opcode == 1 else None
    print("%s | opcode %d, %d bytes, %s" % (status, opcode, len(message),
          "JSON array of %d snapshots" % len(msg) if isinstance(msg, list) else "not a JSON array"))
    sys.exit(0)
elif case.startswith("slowviewer"):
    secs = float(case.split(":")[1])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws_upgrade(s, "/view")
    s.settimeout(3)
    head = s.recv(200)
    print(head.split(b"\r\n")[0].decode())
    time.sleep(secs)  # never reads again
    sys.exit(0)
print(answer(s))
