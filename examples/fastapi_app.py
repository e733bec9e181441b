"""The original FastBlocks README's FastAPI example, unchanged but for the key.

The README's `b'your-encryption-key-here'` is not a Fernet key (the original rejected it too);
the key comes from the environment instead:

    export FASTBLOCKS_KEY=$(fastblocks keygen)      # or BlockManager.generate_encryption_key()
    PYTHONPATH=build/python /usr/bin/python3 -m uvicorn fastapi_app:app --app-dir examples

With several workers (uvicorn --workers 4), run `fastblocks serve` once and set
FASTBLOCKS_URL=http://127.0.0.1:8000 (or unix:/path.sock): every worker's BlockManager then
talks to that one server. See docs/PYTHON.md.
"""
import os

from fastapi import FastAPI, UploadFile, File, HTTPException
from fastapi.responses import StreamingResponse
from fastblocks import BlockManager
from io import BytesIO

app = FastAPI()

encryption_key = os.environ["FASTBLOCKS_KEY"].encode()
manager = BlockManager(max_block_size=10*1024*1024, compression=True, encryption_key=encryption_key, cache_size=50)


@app.post("/upload/")
async def upload_image(file: UploadFile = File(...)):
    image_data = await file.read()
    metadata = await manager.save_image(image_data)
    return {"message": "Image uploaded successfully", "metadata": metadata}


@app.get("/images/{block}/{offset}/{size}")
async def get_image(block: str, offset: int, size: int):
    try:
        image_data = await manager.read_image(block, offset, size)
        return StreamingResponse(BytesIO(image_data), media_type="image/webp")
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="Image not found")


@app.delete("/images/{block}/{offset}/{size}")
async def delete_image(block: str, offset: int, size: int):
    updated_metadata = await manager.delete_image(block, offset, size)
    return {"message": "Image deleted successfully", "updated_metadata": updated_metadata}
