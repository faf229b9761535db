"""Serve this folder on http://127.0.0.1:8000 with the headers that make the page cross-origin isolated.

Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp let the browser give
the page SharedArrayBuffer, so ONNX Runtime Web runs WebAssembly on several threads; without them it runs on
one. Needs only Python's standard library:

    python3 serve.py [--host 127.0.0.1] [--port 8000]

The camera needs a secure context: http://127.0.0.1 and http://localhost are one; from another machine,
serve over HTTPS (any web server that sets the two headers above does the same job).
"""

import argparse
import functools
import http.server
from pathlib import Path


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".json": "application/json",
    }

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    handler = functools.partial(IsolatedHandler, directory=str(Path(__file__).resolve().parent))
    with http.server.ThreadingHTTPServer((args.host, args.port), handler) as server:
        host, port = server.server_address[:2]
        print(f"serving {Path(__file__).resolve().parent} on http://{host}:{port}/ (cross-origin isolated)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
