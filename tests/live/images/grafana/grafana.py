"""A Grafana stand-in: the health API, and the datasources and dashboards provisioned from files.

Reads what a real Grafana 11 reads at start-up: GF_SECURITY_ADMIN_USER and
GF_SECURITY_ADMIN_PASSWORD (or GF_SECURITY_ADMIN_PASSWORD__FILE), GF_AUTH_ANONYMOUS_ENABLED,
GF_PATHS_PROVISIONING/datasources/*.yaml and GF_PATHS_PROVISIONING/dashboards/*.yaml, whose
file providers point at folders of dashboard JSON. Serves:
  GET /api/health                     no auth
  GET /api/datasources                admin (basic auth)
  GET /api/search                     admin, or anyone when anonymous access is on
  GET /api/dashboards/uid/<uid>       the same
It refuses to start on provisioning that real Grafana would refuse: unreadable YAML, a
datasource without name or type, a dashboard JSON that does not parse.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

VERSION = "11.3.1"
PORT = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))


def env_or_file(name: str, default: str) -> str:
    path = os.environ.get(f"{name}__FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def load_provisioning(root: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    datasources: list[dict[str, Any]] = []
    for path in sorted((root / "datasources").glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for index, ds in enumerate(doc.get("datasources") or []):
            if not ds.get("name") or not ds.get("type"):
                raise SystemExit(f"{path}: datasource {index} needs a name and a type")
            datasources.append(
                {
                    "id": len(datasources) + 1,
                    "uid": ds.get("uid", ""),
                    "orgId": ds.get("orgId", 1),
                    "name": ds["name"],
                    "type": ds["type"],
                    "access": ds.get("access", "proxy"),
                    "url": ds.get("url", ""),
                    "isDefault": bool(ds.get("isDefault", False)),
                    "readOnly": not ds.get("editable", False),
                }
            )
    dashboards: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "dashboards").glob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for provider in doc.get("providers") or []:
            folder = Path((provider.get("options") or {}).get("path", ""))
            for board_path in sorted(folder.rglob("*.json")):
                try:
                    board = json.loads(board_path.read_text())
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{board_path}: not JSON: {exc}") from exc
                uid = board.get("uid") or board_path.stem
                dashboards[uid] = {
                    "dashboard": board,
                    "folder": provider.get("folder", ""),
                    "provider": provider.get("name", ""),
                }
    return datasources, dashboards


class Handler(BaseHTTPRequestHandler):
    server: GrafanaServer
    server_version = "grafana-standin"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        if path == "/api/health":
            return self._json(200, {"database": "ok", "version": VERSION})
        admin = self._is_admin()
        viewer = admin or srv.anonymous
        if path == "/api/datasources":
            if not admin:
                return self._json(401 if not viewer else 403, {"message": "Permission denied"})
            return self._json(200, srv.datasources)
        if path == "/api/search":
            if not viewer:
                return self._json(401, {"message": "Unauthorized"})
            return self._json(
                200,
                [
                    {
                        "uid": uid,
                        "title": entry["dashboard"].get("title", ""),
                        "type": "dash-db",
                        "folderTitle": entry["folder"],
                        "url": f"/d/{uid}",
                    }
                    for uid, entry in sorted(srv.dashboards.items())
                ],
            )
        if path.startswith("/api/dashboards/uid/"):
            if not viewer:
                return self._json(401, {"message": "Unauthorized"})
            entry = srv.dashboards.get(path.rsplit("/", 1)[1])
            if entry is None:
                return self._json(404, {"message": "Dashboard not found"})
            meta = {"provisioned": True, "folderTitle": entry["folder"], "canSave": False}
            return self._json(200, {"dashboard": entry["dashboard"], "meta": meta})
        return self._json(404, {"message": "Not found"})

    def _is_admin(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        srv = self.server
        return hmac.compare_digest(user, srv.admin_user) and hmac.compare_digest(
            password, srv.admin_password
        )

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class GrafanaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        root = Path(os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))
        self.datasources, self.dashboards = load_provisioning(root)
        self.admin_user = env_or_file("GF_SECURITY_ADMIN_USER", "admin")
        self.admin_password = env_or_file("GF_SECURITY_ADMIN_PASSWORD", "admin")
        self.anonymous = os.environ.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "true"
        super().__init__(("0.0.0.0", PORT), Handler)


def main() -> int:
    server = GrafanaServer()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"grafana stand-in {VERSION} on :{PORT}: {len(server.datasources)} datasource(s), "
        f"{len(server.dashboards)} dashboard(s)",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
