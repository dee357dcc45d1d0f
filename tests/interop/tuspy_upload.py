"""Uploads one file to a tus endpoint with tuspy, as a user of the library would.

Usage: tuspy_upload.py ENDPOINT TOKEN FILE CHUNK_SIZE [--checksum] [--resume URL]
Prints "URL <upload url>" once the upload is complete; exits non-zero on any error.
"""
import os
import sys

from tusclient import client


def main() -> int:
    endpoint, token, path, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    flags = sys.argv[5:]
    resume = flags[flags.index("--resume") + 1] if "--resume" in flags else None
    tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
    uploader = tus.uploader(
        path,
        url=resume,
        chunk_size=chunk,
        metadata={"filename": os.path.basename(path)},
        upload_checksum="--checksum" in flags,
        retries=2,
        retry_delay=0,
    )
    uploader.upload()
    if uploader.offset != os.path.getsize(path):
        print(f"stopped at {uploader.offset}", file=sys.stderr)
        return 1
    print(f"URL {uploader.url}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
