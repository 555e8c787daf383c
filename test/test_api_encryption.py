"""Explicit client-side field level encryption through Motor's ClientEncryption.

The local KMS provider (a random 96-byte master key) and a key vault collection in the test
server: data keys, encrypt/decrypt with the deterministic and random algorithms, the key
management methods, rewrapping, ``async with`` and ``close``. Needs ``pymongocrypt``.
Results follow PyMongo 4.20's sync :class:`pymongo.encryption.ClientEncryption`; every method
that does I/O is awaited (Motor 3.7.1), ``get_keys`` gives a Motor cursor.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from bson.binary import STANDARD, UUID_SUBTYPE, Binary
from bson.codec_options import CodecOptions
from pymongo.encryption_shared import Algorithm
from pymongo.errors import InvalidOperation, OperationFailure

from test.framework import Framework, run_in_child, run_python

MAX_BUSY = 0.010
DETERMINISTIC = Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Deterministic
RANDOM = Algorithm.AEAD_AES_256_CBC_HMAC_SHA_512_Random
CODEC_OPTIONS: CodecOptions[Any] = CodecOptions(uuid_representation=STANDARD)
# BSON binary subtype of an encrypted value.
ENCRYPTED_SUBTYPE = 6


def encryption_class(fw: Framework) -> Any:
    if fw.name == "asyncio":
        from motor.motor_asyncio import AsyncIOMotorClientEncryption

        return AsyncIOMotorClientEncryption
    from motor.motor_tornado import MotorClientEncryption

    return MotorClientEncryption


def motor_name(fw: Framework, name: str) -> str:
    return ("AsyncIOMotor" if fw.name == "asyncio" else "Motor") + name


class Vault:
    """A key vault namespace in a fresh database, and a local master key."""

    def __init__(self, fw: Framework, client: Any) -> None:
        self.fw = fw
        self.client = client
        self.db_name = f"motor_test_{uuid.uuid4().hex[:8]}"
        self.namespace = f"{self.db_name}.datakeys"
        self.kms_providers = {"local": {"key": os.urandom(96)}}

    def encryption(self, client: Any = None) -> Any:
        """A ClientEncryption with this vault, through ``client`` (else the vault's)."""
        ce = encryption_class(self.fw)(
            kms_providers=self.kms_providers,
            key_vault_namespace=self.namespace,
            key_vault_client=self.client if client is None else client,
            codec_options=CODEC_OPTIONS,
        )
        # The constructor is a plain call (as in Motor 3.7.1) that initialises libmongocrypt
        # and, the first time in a process, loads what the crypto callbacks need: 3-12 ms
        # of CPU here, spent by the test itself, not by an operation.
        self.fw.probe.skip_gap()
        return ce

    @property
    def keys(self) -> Any:
        return self.client[self.db_name].datakeys

    async def drop(self) -> None:
        await self.client.drop_database(self.db_name)


async def test_encrypt_decrypt_round_trip(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    try:
        assert type(ce).__name__ == motor_name(fw, "ClientEncryption")
        key_id = await ce.create_data_key("local", key_alt_names=["name"])
        assert isinstance(key_id, Binary)
        assert key_id.subtype == UUID_SUBTYPE
        # The key is in the vault.
        stored = await vault.keys.find_one({"_id": key_id})
        assert stored is not None
        assert stored["keyAltNames"] == ["name"]
        assert stored["masterKey"] == {"provider": "local"}

        deterministic = await ce.encrypt("secret", DETERMINISTIC, key_id=key_id)
        assert isinstance(deterministic, Binary)
        assert deterministic.subtype == ENCRYPTED_SUBTYPE
        # A subsequence test: mypy takes a bytes subclass for a container of ints.
        assert b"secret" not in deterministic  # type: ignore[comparison-overlap]
        # Deterministic: the same ciphertext every time, also by alternate name.
        assert await ce.encrypt("secret", DETERMINISTIC, key_id=key_id) == deterministic
        assert await ce.encrypt("secret", DETERMINISTIC, key_alt_name="name") == deterministic
        # Random: a different ciphertext every time.
        random_1 = await ce.encrypt("secret", RANDOM, key_id=key_id)
        random_2 = await ce.encrypt("secret", RANDOM, key_alt_name="name")
        assert random_1.subtype == ENCRYPTED_SUBTYPE
        assert len({bytes(deterministic), bytes(random_1), bytes(random_2)}) == 3

        for ciphertext in (deterministic, random_1, random_2):
            assert await ce.decrypt(ciphertext) == "secret"
        for value in (42, 2.5, {"nested": ["a", 1]}, b"bytes", True):
            assert await ce.decrypt(await ce.encrypt(value, RANDOM, key_id=key_id)) == value
        assert await ce.decrypt(await ce.encrypt(7, DETERMINISTIC, key_id=key_id)) == 7

        # An encrypted value stored through Motor and read back decrypts.
        await client[vault.db_name].people.insert_one({"_id": 1, "ssn": deterministic})
        doc = await client[vault.db_name].people.find_one({"ssn": deterministic})
        assert doc is not None
        assert await ce.decrypt(doc["ssn"]) == "secret"
    finally:
        await ce.close()
        await vault.drop()
    fw.probe.assert_below(MAX_BUSY)


async def test_key_management(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    try:
        first = await ce.create_data_key("local", key_alt_names=["first"])
        second = await ce.create_data_key("local")

        key = await ce.get_key(first)
        assert key["_id"] == first
        assert list(key["keyAltNames"]) == ["first"]
        assert key["masterKey"]["provider"] == "local"
        assert await ce.get_key(Binary(uuid.uuid4().bytes, UUID_SUBTYPE)) is None

        cursor = await ce.get_keys()
        assert type(cursor).__name__ == motor_name(fw, "Cursor")
        assert sorted(bytes(k["_id"]) for k in await cursor.to_list()) == sorted(
            [bytes(first), bytes(second)]
        )
        assert len([k async for k in await ce.get_keys()]) == 2

        # add_key_alt_name returns the key document as it was before the change.
        before = await ce.add_key_alt_name(first, "another")
        assert before["_id"] == first
        assert list(before["keyAltNames"]) == ["first"]
        assert sorted((await ce.get_key(first))["keyAltNames"]) == ["another", "first"]
        assert (await ce.get_key_by_alt_name("another"))["_id"] == first
        assert (await ce.get_key_by_alt_name("first"))["_id"] == first
        assert await ce.get_key_by_alt_name("nobody") is None
        # A key created without alternate names.
        added = await ce.add_key_alt_name(second, "second")
        assert "keyAltNames" not in added
        assert (await ce.get_key_by_alt_name("second"))["_id"] == second

        # remove_key_alt_name updates with a pipeline, which FerretDB does not implement
        # (code 238, "Aggregation pipelines are not supported yet"): the same OperationFailure
        # as PyMongo's sync ClientEncryption.
        if server.is_ferretdb:
            with pytest.raises(OperationFailure) as info:
                await ce.remove_key_alt_name(first, "another")
            assert info.value.code == 238
            assert sorted((await ce.get_key(first))["keyAltNames"]) == ["another", "first"]
        else:
            before = await ce.remove_key_alt_name(first, "another")
            assert sorted(before["keyAltNames"]) == ["another", "first"]
            assert list((await ce.get_key(first))["keyAltNames"]) == ["first"]
            assert await ce.get_key_by_alt_name("another") is None

        result = await ce.delete_key(second)
        assert result.deleted_count == 1
        assert await ce.get_key(second) is None
        assert await ce.get_key_by_alt_name("second") is None
        assert [k["_id"] async for k in await ce.get_keys()] == [first]
        assert (await ce.delete_key(second)).deleted_count == 0
    finally:
        await ce.close()
        await vault.drop()
    fw.probe.assert_below(MAX_BUSY)


async def test_rewrap_many_data_key(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    try:
        key_ids = [await ce.create_data_key("local") for _ in range(2)]
        ciphertext = await ce.encrypt("rewrapped", DETERMINISTIC, key_id=key_ids[0])
        material = {
            bytes(k): (await vault.keys.find_one({"_id": k}))["keyMaterial"] for k in key_ids
        }

        result = await ce.rewrap_many_data_key({})
        assert result.bulk_write_result is not None
        assert result.bulk_write_result.modified_count == 2
        for key_id in key_ids:
            stored = await vault.keys.find_one({"_id": key_id})
            assert stored["keyMaterial"] != material[bytes(key_id)]

        # A new ClientEncryption (no cached keys) decrypts with the rewrapped key.
        fresh = vault.encryption()
        try:
            assert await fresh.decrypt(ciphertext) == "rewrapped"
        finally:
            await fresh.close()

        # A filter that matches nothing rewraps nothing.
        result = await ce.rewrap_many_data_key({"_id": Binary(uuid.uuid4().bytes, UUID_SUBTYPE)})
        assert result.bulk_write_result is None
    finally:
        await ce.close()
        await vault.drop()
    fw.probe.assert_below(MAX_BUSY)


async def test_large_values_are_encrypted_and_decrypted_in_a_worker_thread(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libmongocrypt's encryption or decryption of a large value (explicit encrypt and
    decrypt, and the automatic decryption of a reply) runs in a crypto thread, the loop
    running meanwhile; small values stay on the loop's thread."""
    import threading

    from pymongo.encryption_options import AutoEncryptionOpts

    from motor.green import pool as green_pool

    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    threads: list[str] = []
    job = green_pool._crypto_job

    def recording(future: Any, finish: Any, ctx: Any) -> None:
        threads.append(threading.current_thread().name)
        job(future, finish, ctx)

    monkeypatch.setattr(green_pool, "_crypto_job", recording)
    big = "x" * (32 * green_pool.ENCRYPTION_OFF_LOOP_BYTES)  # 2 MiB: about 20 ms to encrypt
    reader = fw.client(
        server.uri,
        auto_encryption_opts=AutoEncryptionOpts(
            vault.kms_providers, vault.namespace, bypass_auto_encryption=True
        ),
    )
    try:
        key_id = await ce.create_data_key("local")
        small = await ce.encrypt("small", RANDOM, key_id=key_id)
        assert await ce.decrypt(small) == "small"
        assert threads == []
        fw.probe.reset()
        ciphertext = await ce.encrypt(big, RANDOM, key_id=key_id)
        assert await ce.decrypt(ciphertext) == big
        assert len(threads) == 2 and all(n.startswith("motor-crypto") for n in threads), threads
        fw.probe.assert_below(MAX_BUSY)

        await client[vault.db_name].people.insert_one({"_id": 1, "big": ciphertext})
        await reader.admin.command("ping")
        threads.clear()
        fw.probe.reset()
        doc = await reader[vault.db_name].people.find_one({"_id": 1})
        assert doc == {"_id": 1, "big": big}
        assert len(threads) == 1 and threads[0].startswith("motor-crypto"), threads
        fw.probe.assert_below(MAX_BUSY)
    finally:
        await ce.close()
        await vault.drop()


async def test_large_decryptions_on_a_one_connection_pool_and_a_busy_executor(
    fw: Framework, server: Any
) -> None:
    """Decryptions of large values whose keys the key vault client fetches (a fresh
    ClientEncryption), together with find_one calls that decrypt a large reply while
    they hold the client's only connection, all finish with the loop's default executor
    down to one thread: a key fetch waiting in a thread for the connection a child holds
    while that child waits for a thread would never end."""
    from concurrent.futures import ThreadPoolExecutor

    from pymongo.encryption_options import AutoEncryptionOpts

    from motor.green.pool import ENCRYPTION_OFF_LOOP_BYTES

    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    setup = fw.client(server.uri)
    vault = Vault(fw, setup)
    first = vault.encryption()
    key_id = await first.create_data_key("local")
    big = "y" * (4 * ENCRYPTION_OFF_LOOP_BYTES)
    ciphertext = await first.encrypt(big, RANDOM, key_id=key_id)
    await setup[vault.db_name].people.insert_one({"_id": 1, "big": ciphertext})
    await first.close()
    client = fw.client(
        server.uri,
        maxPoolSize=1,
        auto_encryption_opts=AutoEncryptionOpts(
            vault.kms_providers, vault.namespace, bypass_auto_encryption=True
        ),
    )
    ce = vault.encryption(client)  # a fresh one: its keys are fetched through client
    try:
        calls = [client[vault.db_name].people.find_one({"_id": 1}) for _ in range(3)]
        calls += [ce.decrypt(ciphertext) for _ in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*calls), 60)
        assert results[:3] == [{"_id": 1, "big": big}] * 3
        assert results[3:] == [big] * 3
    finally:
        await ce.close()
        await vault.drop()
        executor.shutdown()


async def test_a_cancelled_large_encryption_ends_before_close_frees_libmongocrypt(
    fw: Framework, server: Any
) -> None:
    """A large encrypt cancelled while its thread encrypts: the call's cleanup, and the
    ClientEncryption's close() right after, wait for the thread (which uses
    libmongocrypt's context; freeing it under the thread crashed the process)."""
    from motor.green import pool as green_pool

    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    try:
        key_id = await ce.create_data_key("local")
        big = "z" * (24 * green_pool.ENCRYPTION_OFF_LOOP_BYTES)
        cancelled_in_the_thread = 0
        for _ in range(10):
            task = asyncio.ensure_future(ce.encrypt(big, RANDOM, key_id=key_id))
            while not green_pool._crypto_jobs() and not task.done():
                await asyncio.sleep(0.0005)
            if task.done():  # a slow machine's ticks missed the job
                await task
                continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            cancelled_in_the_thread += 1
            if cancelled_in_the_thread == 3:
                break
        assert cancelled_in_the_thread > 0
        await ce.close()
        assert green_pool._crypto_jobs() == []
        assert await client.admin.command("ping") == {"ok": 1.0}
    finally:
        await vault.drop()


async def test_libmongocrypt_freed_by_the_collector_in_a_crypto_thread(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ClientEncryption dropped unclosed in a reference cycle is freed by whichever
    thread the garbage collector runs in, a crypto thread included: its libmongocrypt
    closes there without waiting for the crypto jobs (which would be waiting for
    itself)."""
    import gc
    import threading

    from motor.green import pool as green_pool

    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    key_id = await ce.create_data_key("local")
    dropped: list[Any] = [vault.encryption()]
    dropped.append(dropped)  # a cycle: only the collector frees it
    del dropped
    collected: list[str] = []
    job = green_pool._crypto_job

    def collecting(future: Any, finish: Any, ctx: Any) -> None:
        collected.append(threading.current_thread().name)
        gc.collect()
        job(future, finish, ctx)

    monkeypatch.setattr(green_pool, "_crypto_job", collecting)
    big = "c" * (4 * green_pool.ENCRYPTION_OFF_LOOP_BYTES)
    try:
        ciphertext = await asyncio.wait_for(ce.encrypt(big, RANDOM, key_id=key_id), 30)
        assert collected and collected[0].startswith("motor-crypto"), collected
        assert await asyncio.wait_for(ce.decrypt(ciphertext), 30) == big
    finally:
        await ce.close()
        await vault.drop()


async def test_a_process_forked_while_a_crypto_thread_works_has_its_own(
    fw: Framework, server: Any
) -> None:
    """In a process made by fork() while the parent's crypto thread encrypts, Motor's
    crypto jobs start from none: a ClientEncryption there encrypts (large values in its
    own crypto thread) and closes at once, instead of waiting for the parent's job."""
    from motor.green import pool as green_pool

    client = fw.client(server.uri)
    vault = Vault(fw, client)
    ce = vault.encryption()
    key_id = await ce.create_data_key("local")
    big = "f" * (64 * green_pool.ENCRYPTION_OFF_LOOP_BYTES)  # 4 MiB: about 40 ms
    uri, kms, namespace = server.uri, vault.kms_providers, vault.namespace

    def in_the_child() -> None:
        assert green_pool._crypto_jobs() == []

        async def main() -> None:
            from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorClientEncryption

            own: AsyncIOMotorClient[Any] = AsyncIOMotorClient(uri)
            child_ce: AsyncIOMotorClientEncryption[Any] = AsyncIOMotorClientEncryption(
                kms, namespace, own, CODEC_OPTIONS
            )
            ciphertext = await child_ce.encrypt(big, RANDOM, key_id=key_id)
            assert await child_ce.decrypt(ciphertext) == big
            await asyncio.wait_for(child_ce.close(), 10)
            own.close()

        asyncio.run(main())

    try:
        task = asyncio.ensure_future(ce.encrypt(big, RANDOM, key_id=key_id))
        while not green_pool._crypto_jobs() and not task.done():
            await asyncio.sleep(0.0005)
        assert not task.done()
        # From a thread of the default executor: the loop goes on (the parent's job ends).
        await asyncio.get_running_loop().run_in_executor(None, run_in_child, in_the_child)
        assert (await task).subtype == ENCRYPTED_SUBTYPE
    finally:
        await ce.close()
        await vault.drop()


async def test_async_with_and_close(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    vault = Vault(fw, client)
    try:
        async with vault.encryption() as ce:
            assert type(ce).__name__ == motor_name(fw, "ClientEncryption")
            # Motor 3.7.1's parameters: wrong arguments raise at the call.
            with pytest.raises(TypeError, match=r"missing 2 required positional arguments"):
                ce.create_encrypted_collection(client.motor_test)
            key_id = await ce.create_data_key("local")
            ciphertext = await ce.encrypt(1, DETERMINISTIC, key_id=key_id)
        # Closed on exit.
        with pytest.raises(InvalidOperation):
            await ce.create_data_key("local")
        with pytest.raises(InvalidOperation):
            await ce.decrypt(ciphertext)

        ce = vault.encryption()
        assert await ce.decrypt(ciphertext) == 1
        await ce.close()
        with pytest.raises(InvalidOperation):
            await ce.encrypt(1, DETERMINISTIC, key_id=key_id)
        # Closing the ClientEncryption leaves the key vault client open.
        assert (await client.admin.command("ping"))["ok"] == 1
        assert await vault.keys.count_documents({}) == 1
    finally:
        await vault.drop()
    fw.probe.assert_below(MAX_BUSY)


async def test_motor_3_7_1_s_constructor_arguments(fw: Framework, server: Any) -> None:
    """Motor 3.7.1's parameters: io_loop fifth (checked, and what io_loop returns), then
    kms_tls_options; PyMongo's key_expiration_ms by keyword.  ``with`` names the class."""
    client = fw.client(server.uri)
    vault = Vault(fw, client)
    cls = encryption_class(fw)
    io_loop = client.io_loop
    tls_options: dict[str, Any] = {"local": {}}
    positional = cls(vault.kms_providers, vault.namespace, client, CODEC_OPTIONS, io_loop)
    keywords = cls(
        vault.kms_providers,
        vault.namespace,
        client,
        CODEC_OPTIONS,
        io_loop=io_loop,
        kms_tls_options=tls_options,
        key_expiration_ms=1000,
    )
    sixth = cls(vault.kms_providers, vault.namespace, client, CODEC_OPTIONS, None, tls_options)
    fw.probe.skip_gap()
    try:
        for ce in (positional, keywords, sixth):
            assert ce.io_loop is io_loop
            assert ce.get_io_loop() is io_loop
            key_id = await ce.create_data_key("local")
            assert await ce.decrypt(await ce.encrypt(1, RANDOM, key_id=key_id)) == 1
        assert keywords.delegate._encryption is not None
        with pytest.raises(TypeError):
            cls(vault.kms_providers, vault.namespace, client, CODEC_OPTIONS, "not a loop")
        with pytest.raises(RuntimeError, match=f'Use {cls.__name__} in "async with"'):
            with positional:
                pass
        # Another loop than the client's: what io_loop and get_io_loop() return.
        other_loop = asyncio.new_event_loop()
        try:
            other: Any = other_loop
            if fw.name == "tornado":
                from tornado.platform.asyncio import AsyncIOLoop

                other = AsyncIOLoop(asyncio_loop=other_loop, make_current=False)
            elsewhere = cls(vault.kms_providers, vault.namespace, client, CODEC_OPTIONS, other)
            assert elsewhere.io_loop is other and elsewhere.get_io_loop() is other
            await elsewhere.close()
        finally:
            other_loop.close()
    finally:
        for ce in (positional, keywords, sixth):
            await ce.close()
        await vault.drop()


_FRESH_PROCESS = """
import asyncio, sys
from bson.codec_options import CodecOptions
from pymongocrypt.binding import ffi
import motor.motor_asyncio, motor.motor_tornado

BACKEND = "cryptography.hazmat.backends.openssl"


def loaded():
    return [BACKEND in sys.modules, "char*" in ffi._parsed_types]


async def main(client_class, encryption_class):
    before = loaded()
    client = client_class("mongodb://127.0.0.1:1", connect=False)
    encryption = encryption_class({"local": {"key": bytes(96)}}, "db.keys", client, CodecOptions())
    print(before, loaded())
    await encryption.close()
    client.close()


module = getattr(motor, sys.argv[1])
prefix = "AsyncIOMotor" if sys.argv[1] == "motor_asyncio" else "Motor"
asyncio.run(main(getattr(module, prefix + "Client"), getattr(module, prefix + "ClientEncryption")))
"""


@pytest.mark.parametrize("module", ["motor_asyncio", "motor_tornado"])
def test_the_constructor_loads_what_the_crypto_callbacks_need(module: str) -> None:
    # pymongocrypt's crypto callbacks, run by libmongocrypt inside create_data_key,
    # encrypt and decrypt, import cryptography's OpenSSL backend and have cffi parse the
    # C type they cast to on their first call: 5-15 ms of CPU in one stretch on the
    # loop's thread.  In a fresh process, the constructor has loaded both.
    result = run_python(_FRESH_PROCESS, module)
    assert result.stdout.split("\n")[0] == "[False, False] [True, True]", result.stdout
