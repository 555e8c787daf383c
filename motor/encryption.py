"""Explicit client-side field level encryption, framework-neutral (see :mod:`motor.core`).

Wraps PyMongo's :class:`~pymongo.encryption.ClientEncryption`, whose key-vault
operations run through the Motor client's green connection pools in child greenlets.
Needs PyMongo's ``encryption`` extra (``pymongocrypt``); install ``motor[encryption]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

from bson.raw_bson import RawBSONDocument
from bson.typings import _DocumentType
from pymongo.synchronous.encryption import ClientEncryption

from motor.core import AgnosticBase, AgnosticClient, AgnosticDatabase
from motor.cursors import AgnosticCursor
from motor.metaprogramming import Async, GenericDocuments, mirror

if TYPE_CHECKING:
    from typing import Self

__all__ = ["AgnosticClientEncryption"]


def _create_encrypted_collection(
    encryption: AgnosticClientEncryption[Any],
    database: AgnosticDatabase[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, Any]:
    # Runs on a child greenlet.
    collection, fields = encryption.delegate.create_encrypted_collection(
        database.delegate, *args, **kwargs
    )
    return database._wrap("Collection", collection), fields


_crypto_loaded = False


def _load_crypto_callbacks() -> None:
    """Pay, once per process, what pymongocrypt's crypto callbacks load on their first
    call: they run inside libmongocrypt during ``create_data_key``, ``encrypt`` and
    ``decrypt``, import the OpenSSL backend of ``cryptography`` and have cffi parse the C
    type they cast to.  That is 5-15 ms of CPU, which would otherwise fall on the loop's
    thread in one stretch, inside the first such operation; the constructor, which
    initialises libmongocrypt synchronously anyway, takes it instead."""
    global _crypto_loaded
    if _crypto_loaded:
        return
    _crypto_loaded = True
    try:
        from cryptography.hazmat.backends import default_backend
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.hashes import SHA512
        from cryptography.hazmat.primitives.hmac import HMAC
        from pymongocrypt.binding import ffi  # type: ignore[import-untyped]

        default_backend()
        ffi.typeof("char*")  # pymongocrypt.binary._to_bytes's cast
        # The first AES-256-CBC and HMAC-SHA-512 contexts (what data keys and the AEAD
        # algorithms use) set up OpenSSL's cipher and digest tables.
        key = bytes(32)
        Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor().finalize()
        HMAC(key, SHA512()).finalize()
    except Exception:  # only a head start: the callbacks do it when they run
        pass


class AgnosticClientEncryption(AgnosticBase, GenericDocuments[_DocumentType]):
    """Explicit client-side field level encryption: data keys, ``encrypt`` and
    ``decrypt``, key management.

    Takes the arguments of :class:`pymongo.encryption.ClientEncryption`, with a Motor
    client as ``key_vault_client``, in Motor 3.7.1's order: ``io_loop`` (optional, the
    framework's loop object) comes fifth, before ``kms_tls_options``, and PyMongo's
    later parameters (``key_expiration_ms``) are keyword arguments.  Every method that
    reads or writes the key vault is asynchronous; ``encrypt`` and ``decrypt`` of a
    large value run in a worker thread (see :ref:`known limits <green-limits>`).  The
    constructor is a plain call: it initialises libmongocrypt and, the first time in a
    process, loads what the crypto callbacks need (about 10 ms of CPU), so create it at
    start-up.
    """

    __pymongo_class__ = ClientEncryption
    _agnostic_name = "ClientEncryption"

    create_data_key = Async()
    encrypt = Async()
    encrypt_expression = Async()
    decrypt = Async()
    get_key = Async()
    delete_key = Async()
    add_key_alt_name = Async()
    get_key_by_alt_name = Async()
    remove_key_alt_name = Async()
    rewrap_many_data_key = Async()
    close = Async()

    def __init__(
        self,
        kms_providers: Any,
        key_vault_namespace: str,
        key_vault_client: AgnosticClient[Any],
        codec_options: Any,
        io_loop: Any = None,
        kms_tls_options: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(key_vault_client, AgnosticClient):
            raise TypeError(
                f"key_vault_client must be a Motor client, not {type(key_vault_client)!r}"
            )
        if io_loop is not None:
            # Motor 3.7.1's parameter (the fifth): checked, and what io_loop returns.
            assert self._framework is not None
            self._framework.loop_from_io_loop(io_loop)
        self._io_loop = io_loop
        self.delegate = ClientEncryption(
            kms_providers,
            key_vault_namespace,
            key_vault_client.delegate,
            codec_options,
            kms_tls_options,
            **kwargs,
        )
        self._binding = key_vault_client._binding
        self._client = key_vault_client
        self._key_vault_namespace = key_vault_namespace
        _load_crypto_callbacks()

    @property
    def io_loop(self) -> Any:
        """The ``io_loop`` given to the constructor, else the event loop of the key
        vault client (whose loop the methods run on)."""
        return self._client.io_loop if self._io_loop is None else self._io_loop

    def get_io_loop(self) -> Any:
        """:attr:`io_loop`."""
        return self.io_loop

    async def get_keys(self) -> AgnosticCursor[RawBSONDocument]:
        """A Motor cursor over every data key in the key vault. Asynchronous, as in
        Motor 3.7.1 (``cursor = await encryption.get_keys()``); the cursor fetches on
        demand."""
        db_name, coll_name = self._key_vault_namespace.split(".", 1)
        key_vault = self._client[db_name][coll_name]
        return cast(
            "AgnosticCursor[RawBSONDocument]", key_vault._wrap("Cursor", self.delegate.get_keys())
        )

    @mirror(ClientEncryption.create_encrypted_collection, returns="tuple[Collection, Any]")
    async def create_encrypted_collection(
        self,
        database: Any,
        name: str,
        encrypted_fields: Mapping[str, Any],
        kms_provider: str | None = None,
        master_key: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Create a collection with encrypted fields (Queryable Encryption), making data
        keys for them. Asynchronous (a coroutine function, as in Motor 3.7.1, whose
        parameters it has: wrong arguments raise at the call): returns
        ``(motor_collection, encrypted_fields)``.
        """
        if not isinstance(database, AgnosticDatabase):
            raise TypeError(f"database must be a Motor database, not {type(database)!r}")
        args = (name, encrypted_fields, kms_provider, master_key)
        return await self._binding.call(
            _create_encrypted_collection, (self, database, args, kwargs), {}
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> NoReturn:
        raise RuntimeError(f'Use {type(self).__name__} in "async with", not "with"')

    def __exit__(self, *exc: object) -> None:
        pass
