"""FastBlocks for Python: the original FastBlocks API, with libfastblocks inside.

    from fastblocks import BlockManager

    manager = BlockManager(max_block_size=10*1024*1024, compression=True,
                           encryption_key=BlockManager.generate_encryption_key(), cache_size=50)
    metadata = await manager.save_image(image_bytes)     # {"block", "offset", "size", "id", ...}
    webp = await manager.read_image(metadata["block"], metadata["offset"], metadata["size"])
    await manager.delete_image(metadata["block"], metadata["offset"], metadata["size"])

Errors: unknown image -> FileNotFoundError; bad arguments -> ValueError/TypeError;
undecodable or unsupported upload -> ImageError (a ValueError); corrupt data or a wrong key ->
IntegrityError; a second process opening a store for writing -> StoreLockedError; other engine
failures -> StoreError (an OSError). Every engine error carries `.code`, the FB_E* name.

`fastblocks.fastapi` has a ready APIRouter; `BlockManager(url=...)` talks to `fastblocks serve`
(one store shared by several worker processes).
"""

from ._fastblocks import (
    ImageError,
    IntegrityError,
    StoreError,
    StoreLockedError,
)
from ._fastblocks import version as _engine_version
from .manager import BlockManager

__version__ = _engine_version()

__all__ = [
    "BlockManager",
    "ImageError",
    "IntegrityError",
    "StoreError",
    "StoreLockedError",
    "__version__",
]
