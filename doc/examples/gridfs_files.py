"""GridFS: store files in MongoDB, read them back whole or in pieces, find, rename, delete.

The server is ``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/gridfs_files.py
"""

import asyncio
import io
import os

from gridfs.errors import NoFile

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorGridFSBucket

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

POEM = b"".join(b"line %02d of a poem that is stored in GridFS\n" % n for n in range(1, 21))


async def main():
    client = AsyncIOMotorClient(URI)
    db = client.examples
    # A bucket is a pair of collections: documents.files and documents.chunks.  Small
    # chunks here, to show files spanning several; the default is 255 KiB.
    bucket = AsyncIOMotorGridFSBucket(db, bucket_name="documents", chunk_size_bytes=256)
    await db.drop_collection("documents.files")
    await db.drop_collection("documents.chunks")

    # Upload from bytes or from any file-like object (read without blocking the loop only
    # if it is in memory: read real files in a thread, or write them chunk by chunk).
    poem_id = await bucket.upload_from_stream(
        "poem.txt", POEM, metadata={"contentType": "text/plain", "author": "nobody"}
    )
    print("uploaded poem.txt,", len(POEM), "bytes")

    # Or write it piece by piece: open_upload_stream() is not awaited, its writes are.
    async with bucket.open_upload_stream("numbers.csv") as grid_in:
        await grid_in.write(b"n,square\n")
        for n in range(1, 6):
            await grid_in.write(b"%d,%d\n" % (n, n * n))
    print("uploaded numbers.csv, _id", repr(grid_in._id))

    # A second revision of the same name.
    await bucket.upload_from_stream("numbers.csv", b"n,square\n1,1\n")

    # Download: open_download_stream() is awaited, and so is read().
    grid_out = await bucket.open_download_stream(poem_id)
    print(grid_out.filename, grid_out.length, "bytes in", grid_out.chunk_size, "byte chunks")
    print("metadata:", grid_out.metadata)
    print("uploaded at", grid_out.upload_date)
    print("first line:", (await grid_out.readline()).decode().rstrip())
    grid_out.seek(-43, io.SEEK_END)  # seek is a plain call; it reads nothing
    print("last line:", (await grid_out.read()).decode().rstrip())

    # Chunk by chunk, so a large file never sits whole in memory.
    grid_out = await bucket.open_download_stream(poem_id)
    sizes = [len(chunk) async for chunk in grid_out]
    print("chunk sizes:", sizes)

    # By name: revision -1 (the default) is the latest, 0 the first.
    latest = await bucket.open_download_stream_by_name("numbers.csv")
    first = await bucket.open_download_stream_by_name("numbers.csv", revision=0)
    print("latest revision:", await latest.read())
    print("first revision:", await first.read())

    # Into any writable file-like object.
    out = io.BytesIO()
    await bucket.download_to_stream(poem_id, out)
    print("downloaded", len(out.getvalue()), "bytes, same:", out.getvalue() == POEM)

    # find() queries the files collection and yields GridOut objects.
    async for grid_out in bucket.find({"filename": "numbers.csv"}, sort=[("uploadDate", 1)]):
        print("found", grid_out.filename, grid_out.length, "bytes")

    await bucket.rename(poem_id, "poem-renamed.txt")
    await bucket.delete(poem_id)
    try:
        await bucket.open_download_stream(poem_id)
    except NoFile:
        print("deleted: NoFile")

    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
