"""A Tornado application whose data layer is plain, synchronous MongoEngine code.

The data layer below knows nothing about event loops.  The handlers run it with
:func:`motor.run_green` (or the :func:`motor.green_coroutine` decorator), and MongoEngine
talks to MongoDB through :class:`motor.GreenMongoClient`, so every query parks its
greenlet instead of blocking: the application serves other requests meanwhile.

    python doc/examples/mongoengine_app.py --uri mongodb://localhost:27017/library

then, for instance::

    curl -d '{"title": "Dune", "year": 1965}' localhost:8888/authors/Herbert/books
    curl localhost:8888/authors/Herbert/books?limit=5
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import mongoengine as me
import tornado.web

import motor

# -- the data layer: synchronous MongoEngine, as in any WSGI application ------------


class Author(me.Document):
    name = me.StringField(required=True, unique=True)


class Book(me.Document):
    title = me.StringField(required=True)
    year = me.IntField(min_value=0)
    author = me.ReferenceField(Author, required=True)


def add_book(author_name: str, title: str, year: int) -> Book:
    author = Author.objects(name=author_name).first() or Author(name=author_name).save()
    return Book(title=title, year=year, author=author).save()


def books_by(author_name: str, limit: int = 10) -> list[dict[str, Any]]:
    author = Author.objects.get(name=author_name)  # raises Author.DoesNotExist
    books = Book.objects(author=author).order_by("-year").limit(limit)
    return [as_json(book) for book in books]


def change_year(book_id: str, year: int) -> int:
    return Book.objects(id=book_id).update(set__year=year)


def remove_book(book_id: str) -> None:
    Book.objects.get(id=book_id).delete()


def as_json(book: Book) -> dict[str, Any]:
    # book.author dereferences the ReferenceField: one more query.
    return {"id": str(book.id), "title": book.title, "year": book.year, "author": book.author.name}


# -- the web layer -----------------------------------------------------------------


class BooksHandler(tornado.web.RequestHandler):
    @motor.green_coroutine  # a synchronous handler, run in a greenlet
    def get(self, author_name: str) -> None:
        try:
            books = books_by(author_name, int(self.get_argument("limit", "10")))
        except Author.DoesNotExist:
            raise tornado.web.HTTPError(404) from None
        self.write({"books": books})

    async def post(self, author_name: str) -> None:  # or await motor.run_green(...)
        body = json.loads(self.request.body)
        book = await motor.run_green(add_book, author_name, body["title"], body["year"])
        self.set_status(201)
        self.write(as_json(book))  # no query: the Author object is already loaded


class BookHandler(tornado.web.RequestHandler):
    async def patch(self, book_id: str) -> None:
        year = json.loads(self.request.body)["year"]
        self.write({"updated": await motor.run_green(change_year, book_id, year)})

    async def delete(self, book_id: str) -> None:
        try:
            await motor.run_green(remove_book, book_id)
        except Book.DoesNotExist:
            raise tornado.web.HTTPError(404) from None
        self.set_status(204)


def make_app() -> tornado.web.Application:
    return tornado.web.Application(
        [(r"/authors/([^/]+)/books", BooksHandler), (r"/books/([0-9a-f]{24})", BookHandler)]
    )


async def main(uri: str, port: int) -> None:
    me.connect(host=uri, mongo_client_class=motor.GreenMongoClient, uuidRepresentation="standard")
    make_app().listen(port)
    await asyncio.Event().wait()  # serve until interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", default="mongodb://localhost:27017/library")
    parser.add_argument("--port", type=int, default=8888)
    args = parser.parse_args()
    asyncio.run(main(args.uri, args.port))
