"""Who is asking: a browser session's salted identity, its battles, and its request budget."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from arena import limits, services
from arena.models import Battle


def owner_of(request: HttpRequest) -> str:
    """The salted hash of this browser's session, creating the session if needed."""
    if request.session.session_key is None:
        request.session.save()
    assert request.session.session_key is not None
    return services.identity_hash(request.session.session_key)


def battle_for(request: HttpRequest, battle_id: UUID) -> Battle:
    """A battle of this session; another session's, a forged id and a missing one are a 404."""
    return get_object_or_404(
        Battle.objects.select_related(
            "generation_left", "generation_right", "model_left", "model_right"
        ),
        public_id=battle_id,
        owner=owner_of(request),
    )


def limit_images(request: HttpRequest) -> None:
    """Count a request for images against this session's and this address's limits."""
    limits.hit(scope="images", session=owner_of(request), address=limits.client_address(request))
