"""A ready FastAPI router for FastBlocks: the original README's three endpoints plus the id ones.

    from fastapi import FastAPI
    from fastblocks import BlockManager
    from fastblocks.fastapi import create_router

    app = FastAPI()
    app.include_router(create_router(BlockManager(encryption_key=..., compression=True)))

or, configured from the environment (FASTBLOCKS_URL, or FASTBLOCKS_DATA / FASTBLOCKS_KEY /
FASTBLOCKS_COMPRESSION for an embedded store opened on first use):

    from fastblocks.fastapi import router
    app.include_router(router)

Images are sent as one plain `Response` with Content-Length, a strong ETag (the image id:
images never change) answered with 304 on If-None-Match, and a year-long immutable
Cache-Control. (The original README streamed a BytesIO, which Starlette sends line by line.)

| method | path | result |
|---|---|---|
| POST | /upload/ (multipart field `file`) | {"message": ..., "metadata": {...}} |
| GET | /images/{block}/{offset}/{size} | image/webp, 404 {"detail": "Image not found"} |
| DELETE | /images/{block}/{offset}/{size} | {"message": ..., "updated_metadata": {...}} |
| POST | /images (raw body or multipart `file`) | 201 metadata, Location: /images/{id} |
| GET, HEAD | /images/{id} | image/webp |
| GET | /images/{id}/meta | metadata |
| DELETE | /images/{id} | {"message": ..., "updated_metadata": {...}} |
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from typing import Any, Callable, Dict, Optional, Tuple, Union

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ._fastblocks import ImageError, IntegrityError
from .manager import BlockManager

__all__ = ["create_router", "router", "manager_from_env", "CACHE_CONTROL"]

CACHE_CONTROL = "public, max-age=31536000, immutable"
_NOT_FOUND = {"detail": "Image not found"}
_IMAGE_STATUS = {"EUNSUPPORTED": 415, "ELIMIT": 413, "EIMAGE": 422}

Address = Union[str, Tuple[str, int, int]]
ManagerSource = Union[BlockManager, Callable[[], BlockManager]]


def manager_from_env() -> BlockManager:
    """A BlockManager configured from the environment: FASTBLOCKS_URL selects the client mode;
    otherwise FASTBLOCKS_DATA (default "blocks"), FASTBLOCKS_KEY (comma-separated Fernet keys,
    the first encrypts) and FASTBLOCKS_COMPRESSION=1 configure an embedded store."""
    url = os.environ.get("FASTBLOCKS_URL")
    if url:
        return BlockManager(url=url, token=os.environ.get("FASTBLOCKS_TOKEN"))
    keys = [k.strip() for k in os.environ.get("FASTBLOCKS_KEY", "").split(",") if k.strip()]
    return BlockManager(
        os.environ.get("FASTBLOCKS_DATA", "blocks"),
        compression=os.environ.get("FASTBLOCKS_COMPRESSION", "0") == "1",
        encryption_key=keys[0] if keys else None,
        decryption_keys=keys[1:],
    )


def _error_response(e: Exception) -> Response:
    """The JSON error for an exception of the BlockManager API."""
    if isinstance(e, FileNotFoundError):
        return JSONResponse(_NOT_FOUND, status_code=404)
    if isinstance(e, ImageError):
        return JSONResponse({"detail": str(e)},
                            status_code=_IMAGE_STATUS.get(getattr(e, "code", ""), 422))
    if isinstance(e, PermissionError):
        return JSONResponse({"detail": str(e)}, status_code=401)
    if isinstance(e, ValueError):
        return JSONResponse({"detail": str(e)}, status_code=400)
    if isinstance(e, IntegrityError):
        return JSONResponse({"detail": str(e)}, status_code=500)
    return JSONResponse({"detail": str(e)}, status_code=503)


def _addressed_error_response(e: Exception) -> Response:
    """The JSON error for a call that names an image in its URL: a malformed id or a negative
    number there names no image (404); anything else as _error_response."""
    if isinstance(e, ValueError) and not isinstance(e, ImageError):
        return JSONResponse(_NOT_FOUND, status_code=404)
    return _error_response(e)


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _cache_headers(meta: Dict[str, Any]) -> Dict[str, str]:
    return {"ETag": f'"{meta["id"]}"', "Cache-Control": CACHE_CONTROL}


async def _serve(manager: BlockManager, request: Request, addr: Address) -> Response:
    try:
        inm = request.headers.get("if-none-match")
        if inm is not None:
            meta = await manager.meta(addr)
            if _etag_matches(inm, f'"{meta["id"]}"'):
                return Response(status_code=304, headers=_cache_headers(meta))
        data, meta = await manager.read_with_meta(addr)
    except Exception as e:  # engine errors: JSON with the right status, not a bare 500
        return _addressed_error_response(e)
    headers = _cache_headers(meta)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return Response(status_code=200, media_type="image/webp", headers=headers)
    return Response(content=data, media_type="image/webp", headers=headers)


def _options(request: Request) -> Dict[str, Any]:
    """Conversion options from the query string (quality, effort, lossless, max_dimension,
    keep_metadata), as the HTTP service takes them."""
    opts: Dict[str, Any] = {}
    for name in ("quality", "effort", "max_dimension"):
        v = request.query_params.get(name)
        if v is not None:
            try:
                opts[name] = int(v)
            except ValueError:
                raise ValueError(f"{name} must be an integer, got {v!r}") from None
    for name in ("lossless", "keep_metadata"):
        v = request.query_params.get(name)
        if v is not None:
            if v.lower() not in ("0", "1", "true", "false"):
                raise ValueError(f"{name} must be 0, 1, true or false, got {v!r}")
            opts[name] = v.lower() in ("1", "true")
    return opts


def create_router(manager: Optional[ManagerSource] = None, **router_kwargs: Any) -> APIRouter:
    """An APIRouter serving images of `manager` (a BlockManager, or a function returning one,
    called on first use; default: manager_from_env()). router_kwargs go to APIRouter
    (prefix, tags, ...)."""
    lock = threading.Lock()
    holder: Dict[str, BlockManager] = {}

    def get_manager() -> BlockManager:
        m = holder.get("m")
        if m is None:
            with lock:
                m = holder.get("m")
                if m is None:
                    if isinstance(manager, BlockManager):
                        m = manager
                    elif manager is None:
                        m = manager_from_env()
                    else:
                        m = manager()
                    holder["m"] = m
        return m

    r = APIRouter(**router_kwargs)

    @r.post("/upload/")
    async def upload_image(file: UploadFile = File(...)):
        image_data = await file.read()
        try:
            metadata = await get_manager().save_image(image_data)
        except Exception as e:
            return _error_response(e)
        return {"message": "Image uploaded successfully", "metadata": metadata}

    @r.get("/images/{block}/{offset}/{size}")
    async def get_image(block: str, offset: int, size: int, request: Request):
        return await _serve(get_manager(), request, (block, offset, size))

    @r.delete("/images/{block}/{offset}/{size}")
    async def delete_image(block: str, offset: int, size: int):
        try:
            updated = await get_manager().delete_image(block, offset, size)
        except Exception as e:
            return _error_response(e)
        return {"message": "Image deleted successfully", "updated_metadata": updated}

    @r.post("/images", status_code=201)
    async def post_image(request: Request):
        try:
            opts = _options(request)
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                form = await request.form()
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    return JSONResponse({"detail": "multipart upload needs a file field 'file'"},
                                        status_code=400)
                data = await upload.read()
            else:
                data = await request.body()
            if not data:
                return JSONResponse({"detail": "empty upload"}, status_code=400)
            meta = await get_manager().save_image(data, **opts)
        except Exception as e:
            return _error_response(e)
        location = urllib.parse.urlsplit(str(request.url_for("get_image_by_id", image_id=meta["id"]))).path
        return JSONResponse(meta, status_code=201, headers={"Location": location})

    @r.api_route("/images/{image_id}", methods=["GET", "HEAD"], name="get_image_by_id")
    async def get_image_by_id(image_id: str, request: Request):
        return await _serve(get_manager(), request, image_id)

    @r.get("/images/{image_id}/meta")
    async def get_meta(image_id: str):
        try:
            return await get_manager().meta(image_id)
        except Exception as e:
            return _addressed_error_response(e)

    @r.delete("/images/{image_id}")
    async def delete_by_id(image_id: str):
        try:
            updated = await get_manager().delete(image_id)
        except Exception as e:
            return _addressed_error_response(e)
        return {"message": "Image deleted successfully", "updated_metadata": updated}

    r.get_manager = get_manager  # type: ignore[attr-defined]
    return r


# Configured from the environment; the store is opened on the first request.
router = create_router()
