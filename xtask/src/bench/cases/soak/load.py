# The soak's load, in host b, against the server at ADDR:PORT (which answers each byte with
# two): HELD connections opened first and held for SECONDS, each sending 100 bytes a second
# and reading the 200 of the answer; meanwhile NEW connections a second, each sending 100
# bytes, reading 200 and closing. Then the held ones close (the client's FIN first, as every
# connection here). Prints "ready" once the held ones are established, then at the end one
# JSON line: the connections made and the payload bytes each way, counted as sent and read.
# Any failure ends it with a message and a non-zero status: the soak counts on every one.
import asyncio, json, sys, time

addr, port = sys.argv[1], int(sys.argv[2])
held, rate, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
REQUEST, ANSWER, TIMEOUT = b"x" * 100, 200, 30
count = {"connections": 0, "client_bytes": 0, "server_bytes": 0}


async def connect():
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), TIMEOUT)
    count["connections"] += 1
    return reader, writer


async def exchange(reader, writer):
    writer.write(REQUEST)
    await writer.drain()
    count["client_bytes"] += len(REQUEST)
    await asyncio.wait_for(reader.readexactly(ANSWER), TIMEOUT)
    count["server_bytes"] += ANSWER


async def close(reader, writer):
    # Our FIN first; then the server's, once it has read ours (nothing more before it).
    writer.write_eof()
    if await asyncio.wait_for(reader.read(1), TIMEOUT):
        raise RuntimeError("bytes after the answer")
    writer.close()
    await writer.wait_closed()


async def hold(conn, slot, stop):
    # Each held connection sends at its own point of the second.
    await asyncio.sleep(slot)
    while not stop.is_set():
        started = time.monotonic()
        await exchange(*conn)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    await close(*conn)


async def once():
    conn = await connect()
    await exchange(*conn)
    await close(*conn)


churn, failures = set(), []


def finished(task):
    churn.discard(task)
    if not task.cancelled() and task.exception():
        failures.append(task.exception())


async def main():
    conns = []
    for _ in range(held):
        conns.append(await connect())
    print("ready", flush=True)
    stop = asyncio.Event()
    holders = [asyncio.create_task(hold(c, i / held, stop)) for i, c in enumerate(conns)]
    start, started = time.monotonic(), 0
    # NEW a second, started in tenths of a second, on schedule from the start; the last
    # round starts what is left of SECONDS * NEW.
    total, last = int(seconds * rate), False
    while not last:
        elapsed = time.monotonic() - start
        last = elapsed >= seconds
        due = total if last else min(int(elapsed * rate), total)
        for _ in range(due - started):
            task = asyncio.create_task(once())
            churn.add(task)
            task.add_done_callback(finished)
        started = due
        if failures:
            raise failures[0]
        for task in holders:
            if task.done():
                task.result()
        if len(churn) > 10 * rate:
            raise RuntimeError(f"{len(churn)} connections in flight: the host cannot keep up")
        await asyncio.sleep(0.1)
    stop.set()
    for task in list(churn) + holders:
        await task
    if failures:
        raise failures[0]
    print(json.dumps(count), flush=True)


try:
    asyncio.run(main())
except Exception as e:
    sys.exit(f"soak load: {type(e).__name__}: {e} ({count})")
