"""Fixtures of the data tests (archives in the VOC / SBD layouts, a local HTTP server); builders live beside."""

import logging

import pytest
from tests.data.archive_builders import http_server, sbd_tgz, voc_tar  # noqa: F401


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


@pytest.fixture
def logs():
    """The ppcseg logger's messages at INFO and up; works with pytest's logging plugin off (-p no:logging)."""
    logger, handler = logging.getLogger("ppcseg"), _Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)
