#!/usr/bin/env python3
"""Misbehaving clients for ssm-monitor's robustness test (stdlib only). Prints what the server answered.
usage: monitor_probe.py PORT TOKEN CASE   (CASE: garbage, badhello, oversize, wrongch, truncated, silent, badtoken,
       badversion, slowviewer:SECONDS, httpnotoken)"""
import socket, struct, sys, time, os, base64

port, token, case = int(sys.argv[1]), sys.argv[2], sys.argv[3]

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
    except ConnectionResetError:
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

s = socket.create_connection(("127.0.0.1", port))
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
elif case.startswith("slowviewer"):
    secs = float(case.split(":")[1])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /view?token=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (token, key)).encode())
    s.settimeout(3)
    head = s.recv(200)
    print(head.split(b"\r\n")[0].decode())
    time.sleep(secs)  # never reads again
    sys.exit(0)
print(answer(s))
