# Type information for the C extension fastblocks._fastblocks (python/_fastblocks.c).
import os
from typing import Any, Dict, Iterable, List, Literal, Optional, Tuple, Union, overload

Address = Union[str, Tuple[str, int, int]]
Meta = Dict[str, Any]

DURABILITY_ALWAYS: int
DURABILITY_BATCH: int
DURABILITY_NONE: int
ID_LEN: int
KEY_LEN: int

class StoreError(OSError):
    code: str

class IntegrityError(StoreError): ...
class StoreLockedError(StoreError): ...

class ImageError(ValueError):
    code: str

class Store:
    def __init__(
        self,
        path: Union[str, bytes, "os.PathLike[str]"],
        *,
        max_block_size: int = ...,
        durability: int = ...,
        batch_interval_ms: int = ...,
        compression: bool = ...,
        compression_level: int = ...,
        keys: Optional[Iterable[Union[str, bytes]]] = ...,
        cache_bytes: int = ...,
        cache_entries: int = ...,
        read_only: bool = ...,
        create: bool = ...,
        quality: int = ...,
        effort: int = ...,
        lossless: bool = ...,
        max_dimension: int = ...,
        keep_metadata: bool = ...,
    ) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> Optional[str]: ...
    def put(
        self,
        data: Union[bytes, bytearray, memoryview],
        *,
        quality: Optional[int] = ...,
        effort: Optional[int] = ...,
        lossless: Optional[bool] = ...,
        max_dimension: Optional[int] = ...,
        keep_metadata: Optional[bool] = ...,
    ) -> Meta: ...
    def put_webp(self, data: Union[bytes, bytearray, memoryview], width: int, height: int) -> Meta: ...
    @overload
    def get(self, addr: Address, with_meta: Literal[False] = ..., cached_only: Literal[False] = ...) -> bytes: ...
    @overload
    def get(self, addr: Address, with_meta: Literal[True], cached_only: Literal[False] = ...) -> Tuple[bytes, Meta]: ...
    @overload
    def get(self, addr: Address, with_meta: bool, cached_only: Literal[True]) -> Optional[Any]: ...
    def stat(self, addr: Address) -> Meta: ...
    def delete(self, addr: Address) -> Dict[str, Any]: ...
    def stats(self) -> Dict[str, int]: ...
    def blocks(self) -> List[Dict[str, Any]]: ...
    def compact(self, threshold: float = ...) -> Dict[str, int]: ...
    def verify(self) -> Dict[str, Any]: ...
    def close(self) -> None: ...

def keygen() -> bytes: ...
def key_check(key: Union[str, bytes]) -> None: ...
def version() -> str: ...
def error_codes() -> List[Tuple[int, str, str]]: ...
def make_error(code: int, detail: str) -> Exception: ...
