"""Fixtures of the data tests (archives in the VOC / SBD layouts, a local HTTP server); builders live beside."""

from archive_builders import http_server, sbd_tgz, voc_tar  # noqa: F401
