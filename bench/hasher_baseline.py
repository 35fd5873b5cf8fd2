"""Baseline for the hasher-api benchmark: a minimal FastAPI + uvicorn service computing
PIXL's keyed BLAKE2b hash (the scheme and the endpoint of PIXL's Python hasher), with the
key and salts held in memory. Run: uvicorn --app-dir bench hasher_baseline:app --port N
"""

import hashlib

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse

KEY = b"test-key"
PROJECT_SALT = "a161577b49a9235a"
LOCAL_SALT = "pixl_salt"

app = FastAPI()


@app.get("/heart-beat")
def heart_beat() -> str:
    return "OK"


@app.get("/hash", response_class=PlainTextResponse)
def hash_message(project_slug: str, message: str, length: int = 64) -> str:
    if not 2 <= length <= 64:
        raise HTTPException(status_code=400, detail="length must be from 2 to 64")
    digest = hashlib.blake2b(key=KEY, digest_size=length // 2)
    digest.update((message + PROJECT_SALT + LOCAL_SALT).encode())
    return digest.hexdigest()
