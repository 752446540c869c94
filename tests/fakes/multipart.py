"""Parsing multipart/form-data bodies the way OpenAI's upload endpoints do: no boundary, no form."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from typing import Any


class MultipartError(ValueError):
    """The body is not a multipart form the server can read."""


def parse_form(content_type: str, raw: bytes) -> dict[str, Any]:
    """Fields of a multipart/form-data body: text fields as str, files as {filename, content_type, size,
    sha256}. Raises MultipartError when the Content-Type has no boundary or the body does not match it."""
    header = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n")
    if header.get_content_type() != "multipart/form-data" or not header.get_param("boundary"):
        raise MultipartError("Could not parse multipart form: the Content-Type has no boundary")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if not parts:
        raise MultipartError("Could not parse multipart form: no part matches the boundary")
    form: dict[str, Any] = {}
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise MultipartError("Could not parse multipart form: a part has no name")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            form[name] = data.decode("utf-8")
        else:
            form[name] = {"filename": filename, "content_type": part.get_content_type(), "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()}
    return form
