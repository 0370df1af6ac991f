# A stand-in for systemd's notify socket (test/e2e/ops-notify.test.ts):
#   python3 notify-listener.py SOCKET_PATH HOST PORT SECONDS
# binds a unix datagram socket, and for every datagram prints one JSON line:
# the message, and whether HOST:PORT accepted a TCP connection at that moment
# (so a test can tell READY=1 came only after the listener was bound).
import json, socket, sys, time

path, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
print(json.dumps({"listening": path}), flush=True)
end = time.time() + seconds
while time.time() < end:
    s.settimeout(max(0.1, end - time.time()))
    try:
        data = s.recv(4096).decode()
    except socket.timeout:
        break
    c = socket.socket()
    c.settimeout(1)
    try:
        c.connect((host, port))
        accepting = True
    except OSError:
        accepting = False
    finally:
        c.close()
    print(json.dumps({"msg": data, "accepting": accepting}), flush=True)
