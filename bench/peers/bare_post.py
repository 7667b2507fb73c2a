"""A bare Tornado score-post handler: the same JWT and JSON work as the server, storing nothing.

    python bench/peers/bare_post.py --port P --jwt-secret SECRET

`POST /api/boards/{board}/scores` with `Authorization: Bearer <HS256 token>` and a JSON body
`{"user_id", "score"}`: decodes and checks the token (PyJWT, as the server does), parses and
checks the body (orjson), and answers 201 with a JSON result of the server's shape. No
database, no ranking: the ceiling of a Tornado handler on this machine, which the durable
post rate of the server is compared with. `GET /readyz` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import jwt
import orjson
import tornado.web


class Scores(tornado.web.RequestHandler):
    def initialize(self, secret: str) -> None:
        self.secret = secret

    def post(self, board: str) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise jwt.InvalidTokenError("no bearer token")
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            self.set_status(401)
            self.finish({"code": "auth_failed"})
            return
        try:
            body = orjson.loads(self.request.body)
        except orjson.JSONDecodeError:
            body = None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("user_id", claims["sub"]), str)
            or not isinstance(body.get("score"), int)
        ):
            self.set_status(422)
            self.finish({"code": "validation_failed"})
            return
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.finish(
            orjson.dumps(
                {
                    "board": board,
                    "user_id": body.get("user_id", claims["sub"]),
                    "score": body["score"],
                    "rank": 1,
                    "previous_rank": None,
                    "improved": True,
                    "seq": 1,
                }
            )
        )


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwt-secret", required=True)
    args = parser.parse_args()
    app = tornado.web.Application(
        [
            (r"/api/boards/([^/]+)/scores", Scores, {"secret": args.jwt_secret}),
            (r"/readyz", Ready),
        ]
    )
    app.listen(args.port, "127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
