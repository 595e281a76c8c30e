# The soak's server, in host a: on ADDR:PORT, answers every byte a client sends with two
# (each chunk written back twice), and closes when the client has closed its side.
import asyncio, sys

addr, port = sys.argv[1], int(sys.argv[2])


async def serve(reader, writer):
    # A reset or an error shows in the flow log's record of the connection (not "closed").
    while data := await reader.read(65536):
        writer.write(data + data)
        await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(serve, addr, port, backlog=4096)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
