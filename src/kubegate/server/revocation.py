"""Deleting kube tokens when what minted them ends.

The proxy caches a kube token from its first use, so a deletion here must be followed, once
committed, by the matching :class:`~kubegate.gateway.authority.Authority` call (which forgets
the cached tokens and closes their open streams): ``person_signed_out`` after
:func:`delete_person_kube_tokens`, ``access_key_deleted`` after :func:`delete_key_kube_tokens`.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.storage.models import KubeToken


async def delete_person_kube_tokens(db: AsyncSession, *, user_id: str, org_id: str) -> int:
    """Delete the kube tokens a user's own logins minted in an organisation (not those of
    their access keys, nor the ServiceAccount tokens they issued); answers how many."""
    result = await db.execute(
        delete(KubeToken).where(
            KubeToken.user_id == user_id,
            KubeToken.org_id == org_id,
            KubeToken.access_key_id.is_(None),
            KubeToken.service_account_id.is_(None),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_key_kube_tokens(db: AsyncSession, access_key_id: str) -> int:
    """Delete the kube tokens minted with an access key; answers how many."""
    result = await db.execute(delete(KubeToken).where(KubeToken.access_key_id == access_key_id))
    return int(getattr(result, "rowcount", 0) or 0)
