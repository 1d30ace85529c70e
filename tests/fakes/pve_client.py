"""The stand-in packer's Proxmox API client: the part of proxmoxer's interface it uses, on http.client.

Packer's plugin talks to the API with its own Go client; the stand-in only needs to make the same
calls. proxmoxer would pull in requests, whose import is most of a stand-in build's start-up,
and every test build starts one. What matches proxmoxer 2.3.0 (proxmoxer/core.py,
proxmoxer/backends/https.py): resource paths (``api.nodes("pve1").qemu(9000).status.start``),
``get``/``delete`` with query parameters and ``post``/``put`` with a form body, None values dropped,
a file object sent as multipart (field name, file name, ``application/octet-stream``), the token
header ``PVEAPIToken=user!name=secret``, the JSON ``data`` as result, and the message of
``ResourceException`` (``"<status> <reason>: <reason> - <errors>"``) for a status of 400 or more.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import ssl
import uuid
from typing import Any
from urllib.parse import urlencode

TIMEOUT_SECONDS = 5  # proxmoxer's default


class ResourceException(Exception):
    def __init__(self, status_code: int, status_message: str, content: str, errors: Any = None) -> None:
        self.status_code = status_code
        self.errors = errors
        if errors is not None:
            content += f" - {errors}"
        super().__init__(f"{status_code} {status_message}: {content}".strip())


class Api:
    """One keep-alive HTTPS connection, as a requests session would hold."""

    def __init__(self, host: str, port: int, user: str, token_name: str, token_value: str, verify: bool | str) -> None:
        if verify is False:
            context = ssl._create_unverified_context()
        else:
            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        self.connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_SECONDS, context=context)
        self.headers = {
            "Authorization": f"PVEAPIToken={user}!{token_name}={token_value}",
            "Accept": "application/json",
        }

    def request(self, method: str, path: str, fields: dict[str, Any]) -> Any:
        fields = {key: value for key, value in fields.items() if value is not None}
        headers = dict(self.headers)
        body: bytes | None = None
        url = "/api2/json" + path
        if method in ("GET", "DELETE"):
            if fields:
                url += "?" + urlencode(fields, doseq=True)
        elif any(isinstance(value, io.IOBase) for value in fields.values()):
            body, headers["Content-Type"] = _multipart(fields)
        else:
            body = urlencode(fields, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, url, body=body, headers=headers)
        response = self.connection.getresponse()
        content = response.read()
        if response.status >= 400:
            try:
                errors = json.loads(content).get("errors")
            except ValueError:
                errors = {"errors": content}
            raise ResourceException(
                response.status, http.client.responses.get(response.status, ""), response.reason, errors
            )
        try:
            return json.loads(content)["data"]
        except ValueError:
            return {"errors": content}


def _multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, io.IOBase):
            filename = os.path.basename(str(getattr(value, "name", name)))
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            data = value.read()
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            data = str(value).encode()
        parts.append(f"--{boundary}\r\n{head}".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Resource:
    def __init__(self, api: Api, path: str = "") -> None:
        self._api = api
        self._path = path

    def __getattr__(self, item: str) -> Resource:
        if item.startswith("_"):
            raise AttributeError(item)
        return Resource(self._api, f"{self._path}/{item}")

    def __call__(self, resource_id: Any = None) -> Resource:
        if resource_id in (None, ""):
            return self
        # Appended as it is, as proxmoxer does (a volume ID "local:iso/x.iso" spans two path segments).
        return Resource(self._api, f"{self._path}/{resource_id}")

    def get(self, **params: Any) -> Any:
        return self._api.request("GET", self._path, params)

    def delete(self, **params: Any) -> Any:
        return self._api.request("DELETE", self._path, params)

    def post(self, **data: Any) -> Any:
        return self._api.request("POST", self._path, data)

    def put(self, **data: Any) -> Any:
        return self._api.request("PUT", self._path, data)


def connect(host: str, port: int, user: str, token_name: str, token_value: str, verify: bool | str) -> Resource:
    return Resource(Api(host, port, user, token_name, token_value, verify))
