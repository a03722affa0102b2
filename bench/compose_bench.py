"""Micro benchmark: µs per composed ~5 KB text + HTML form letter, fast path vs email package.

Run: .venv/bin/python bench/compose_bench.py [--n 2000]
"""

from __future__ import annotations

import argparse
import timeit

import sendas.compose as compose_module
from sendas.compose import Content, Sender, compose

TEXT = ("Hallo Anna,\n\nvielen Dank für Ihre Bestellung Nr. 12345 vom 2. Mai. " * 2 + "\n") * 22
HTML = (
    "<html><body>\n"
    + '<p style="color:#333;font-family:Arial">Hallo Anna, vielen Dank f&uuml;r Ihre'
    " Bestellung.</p>\n" * 24 + "</body></html>\n"
)
SENDER = Sender("Ann Example", "ann@example.com", reply_to="support@example.com")
CONTENT = Content(to=["bob@example.org"], subject="Ihre Bestellung 12345", text=TEXT, html=HTML)


def per_message(fast: bool, n: int) -> float:
    compose_module.FAST_PATH = fast
    compose(SENDER, CONTENT, utf8=False)  # warm caches (IDNA)
    best = min(timeit.repeat(lambda: compose(SENDER, CONTENT, utf8=False), number=n, repeat=5))
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="messages per timing round")
    args = parser.parse_args()
    size = len(compose(SENDER, CONTENT, utf8=False).data)
    fast = per_message(True, args.n)
    slow = per_message(False, max(args.n // 10, 1))
    print(f"message: {size} bytes (text + HTML)")
    print(f"email package: {slow:8.1f} µs/message ({1e6 / slow:7.0f} msgs/s)")
    print(f"fast path:     {fast:8.1f} µs/message ({1e6 / fast:7.0f} msgs/s)")
    print(f"speed-up:      {slow / fast:8.1f}x")


if __name__ == "__main__":
    main()
