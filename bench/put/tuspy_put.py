"""tuspy for bench/put/run.sh: uploads FILE in CHUNK-byte PATCHes (tuspy has no parallel mode).

    python3 tuspy_put.py ENDPOINT TOKEN FILE CHUNK
"""
import os
import sys

from tusclient import client

endpoint, token, path, chunk = sys.argv[1:5]
c = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
uploader = c.uploader(path, chunk_size=int(chunk), metadata={"filename": os.path.basename(path)})
uploader.upload()
print(uploader.url)
