"""A tiny stand-in for the Hugging Face Hub HTTP API on 127.0.0.1, answering the few endpoints huggingface_hub's own
client calls for snapshot_download, create_repo and upload_folder (huggingface_hub 0.x and >= 1). Requests are bounded (one test's worth)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body=b"", headers=None, head=False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, code, obj):
                self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _route(self, head=False):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path, dict(self.headers)))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and "revision" in parts:
                    repo = "/".join(parts[2:parts.index("revision")])
                    if repo not in hub.repos:
                        return self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    return self._json(200, {"id": repo, "modelId": repo, "sha": hub.commits[repo], "private": False,
                                            "siblings": [{"rfilename": f} for f in sorted(hub.repos[repo])]})
                if parts[:2] == ["api", "models"] and "tree" in parts:  # huggingface_hub >= 1 lists files here
                    repo = "/".join(parts[2:parts.index("tree")])
                    if repo not in hub.repos:
                        return self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound"})
                    return self._json(200, [hub.tree_entry(f, d) for f, d in sorted(hub.repos[repo].items())])
                if "resolve" in parts:
                    i = parts.index("resolve")
                    repo, fname = "/".join(parts[:i]), "/".join(parts[i + 2:])
                    files = hub.repos.get(repo)
                    if files is None or fname not in files:
                        return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                    data = files[fname]
                    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                    return self._send(200, data, {"X-Repo-Commit": hub.commits[repo], "ETag": etag}, head)
                return self._send(404, b"{}", head=head)

            def do_HEAD(self):
                self._route(head=True)

            def do_GET(self):
                self._route()

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", path, dict(self.headers)))
                parts = path.strip("/").split("/")
                if path == "/api/validate-yaml":
                    import yaml  # the card's metadata must at least parse, as on the Hub

                    yaml.safe_load(json.loads(body)["content"].split("---")[1])
                    return self._json(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'me'}/{req['name']}" if "/" not in req["name"] else req["name"]
                    hub.created.append(req)
                    hub.repos.setdefault(repo, {})
                    hub.commits.setdefault(repo, "0" * 40)
                    return self._json(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
                if parts[:2] == ["api", "models"] and "preupload" in parts:
                    req = json.loads(body)
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in req.get("files", [])]})
                if parts[:2] == ["api", "models"] and "commit" in parts:
                    repo = "/".join(parts[2:parts.index("commit")])
                    for line in body.decode().splitlines():
                        op = json.loads(line)
                        if op.get("key") == "file":
                            v = op["value"]
                            hub.repos.setdefault(repo, {})[v["path"]] = base64.b64decode(v["content"])
                    hub.commits[repo] = hashlib.sha1(repr(sorted(hub.repos[repo])).encode()).hexdigest()
                    # the commit URL in the Hub's own form (huggingface_hub parses it against its default endpoint)
                    return self._json(200, {"commitUrl": f"https://huggingface.co/{repo}/commit/{hub.commits[repo]}",
                                            "commitOid": hub.commits[repo], "success": True})
                return self._json(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def tree_entry(path: str, data: bytes) -> dict:
        """A file as the Hub's tree API lists it: every file stored as LFS (its ETag below is the sha256)."""
        git = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        return {"type": "file", "path": path, "size": len(data), "oid": git,
                "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}

    def add_repo(self, repo: str, files: dict[str, bytes], commit: str = "c" * 40) -> None:
        self.repos[repo] = dict(files)
        self.commits[repo] = commit

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
