# Holds COUNT real TCP connections to ADDR:PORT; prints "ready" once all are established, then
# sleeps ("idle") or sends 100 bytes on each one once a second ("active") until killed.
import errno, os, resource, select, socket, sys, time

addr, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Within the machine's hard limit (the caller keeps COUNT under it).
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))

BURST = 500
socks = []
while len(socks) < count:
    # Many connect() in a row, then wait for all of them.
    burst = []
    for _ in range(min(BURST, count - len(socks))):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex((addr, port))
        if err not in (0, errno.EINPROGRESS):
            sys.exit(f"connect: {os.strerror(err)} after {len(socks) + len(burst)}")
        burst.append(s)
    poll = select.poll()
    for s in burst:
        poll.register(s, select.POLLOUT)
    pending, deadline = len(burst), time.monotonic() + 30
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"connect: {pending} still pending after 30 s")
        for fd, _ in poll.poll(1000):
            poll.unregister(fd)
            pending -= 1
    for s in burst:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sys.exit(f"connect: {os.strerror(err)} after {len(socks)}")
    socks += burst
print("ready", flush=True)

if mode == "idle":
    while True:
        time.sleep(3600)

# 100 bytes a second on each connection, spread over the second in tenths.
payload, slices = b"x" * 100, 10
tick = time.monotonic()
while True:
    for i in range(slices):
        for s in socks[i::slices]:
            try:
                s.send(payload)
            except BlockingIOError:
                pass
        tick += 1 / slices
        time.sleep(max(0.0, tick - time.monotonic()))
