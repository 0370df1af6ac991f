#!/usr/bin/env python3
"""ARP sampler of the failover lab (test/lab/failover.ts): broadcasts an ARP
request for TARGET on IFACE every INTERVAL seconds for at most SECONDS and
prints one line per reply: "<request number> <unix ms> <sender mac>".
Every reply is printed, so two hosts answering one request show as two
lines with the same request number. (iputils arping stops at the first
reply and takes whole-second intervals only.)

    arp-sampler.py IFACE SOURCE_IP TARGET_IP INTERVAL SECONDS
"""
import select
import socket
import struct
import sys
import time

iface, src, target, interval, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
ETH_P_ARP = 0x0806
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
s.bind((iface, ETH_P_ARP))
mac = s.getsockname()[4]
request = (b'\xff' * 6 + mac + struct.pack('!H', ETH_P_ARP)
           + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(src)
           + b'\x00' * 6 + socket.inet_aton(target))
end = time.time() + seconds
seq, next_send = 0, 0.0
while time.time() < end:
    now = time.time()
    if now >= next_send:
        seq += 1
        s.send(request)
        next_send = now + interval
    r, _, _ = select.select([s], [], [], max(0.0, next_send - time.time()))
    if not r:
        continue
    frame = s.recv(128)
    if len(frame) < 42:
        continue
    op, = struct.unpack('!H', frame[20:22])
    if op == 2 and frame[28:32] == socket.inet_aton(target):
        sender = ':'.join('%02x' % b for b in frame[22:28])
        print(seq, int(time.time() * 1000), sender, flush=True)
