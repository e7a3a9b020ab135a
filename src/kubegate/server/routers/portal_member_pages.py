"""The portal's pages for members (/portal/members) (ADR 0006). Not built yet."""

from __future__ import annotations

from fastapi import APIRouter

from kubegate.server.portal_render import PortalTemplates


def member_pages_router(templates: PortalTemplates) -> APIRouter:
    """The routes of these pages, rendering with ``templates``."""
    del templates
    return APIRouter(include_in_schema=False)
