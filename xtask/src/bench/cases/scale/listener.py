# Listens on ADDR at each PORT with a backlog of 65535 and never accepts: the server sides of
# the connections wait, established, in the listeners' queues.
import socket, sys, time

addr, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
listeners = []
for port in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(65535)
    listeners.append(s)
print("listening", flush=True)
while True:
    time.sleep(3600)
