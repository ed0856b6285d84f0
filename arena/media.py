"""How generated images leave the arena: streamed by Django, or sent by the proxy.

Every image answer looks the same whichever model made the image: one content type, one cache
policy, a random file name, and with ``accel`` only what the proxy adds (deploy/nginx.conf strips
the store's Last-Modified, ETag and x-amz-* headers, which would tell when and how an image was
stored). Object-store URLs never reach the browser: the proxy fetches them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, HttpResponse, HttpResponseBase

CONTENT_TYPE = "image/png"
# Names are random and content never changes; let the browser keep the file privately.
CACHE_CONTROL = "private, max-age=86400, immutable"
# The proxy's internal locations (deploy/nginx/arena.conf.template).
DISK_LOCATION = "/internal-media/"
STORE_LOCATION = "/internal-store/"


def image_response(image: FieldFile) -> HttpResponseBase:
    """The answer for one stored image, by ``ARENA_MEDIA_SERVE``."""
    response: HttpResponseBase
    if settings.ARENA_MEDIA_SERVE == "accel":
        response = HttpResponse(content_type=CONTENT_TYPE)
        response["X-Accel-Redirect"] = accel_target(image)
    else:
        response = FileResponse(image.open("rb"), content_type=CONTENT_TYPE)
    response["Cache-Control"] = CACHE_CONTROL
    return response


def accel_target(image: FieldFile) -> str:
    """The proxy's internal location for the file: its path on disk, or a signed store URL.

    On disk: ``/internal-media/images/<name>``, which the proxy maps to MEDIA_ROOT. On an object
    store: ``/internal-store/<bucket>/images/<name>?<signature>`` (path-style, signed for a
    minute), which the proxy passes to the store's endpoint as it is.
    """
    if not settings.ARENA_MEDIA_S3_BUCKET:
        return DISK_LOCATION + str(image.name)
    signed = urlsplit(image.storage.url(str(image.name)))
    return STORE_LOCATION + signed.path.lstrip("/") + (f"?{signed.query}" if signed.query else "")
