"""FastAPI app serving FastBlocks through the ready router (fastblocks.fastapi), configured from
the environment (FASTBLOCKS_DATA, FASTBLOCKS_KEY, FASTBLOCKS_COMPRESSION or FASTBLOCKS_URL).

    PYTHONPATH=build/python /usr/bin/python3 -m uvicorn router_app:app --app-dir bench/python
"""
from fastapi import FastAPI

from fastblocks.fastapi import router

app = FastAPI()
app.include_router(router)
