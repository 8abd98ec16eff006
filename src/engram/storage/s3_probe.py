"""The start-up check of an S3-compatible store: it must honour conditional PUT, or concurrent commits are lost."""

from __future__ import annotations

import logging
import uuid

from engram.core.errors import InvalidInput
from engram.storage.location import ObjectStore, s3_client

logger = logging.getLogger(__name__)

SETTING = "ENGRAM_STORAGE_URI"


def check_conditional_put(store: ObjectStore) -> None:
    """PUT one probe object twice with `If-None-Match: *`; the second must be refused (412 or 409), else raise.

    LanceDB commits a table version by creating its manifest with such a PUT: a store that ignores the header lets
    two replicas' commits overwrite each other without an error, silently losing acknowledged writes.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client()
    key = f"{store.prefix}/.engram-probe/{uuid.uuid4().hex}" if store.prefix else f".engram-probe/{uuid.uuid4().hex}"
    try:
        client.put_object(Bucket=store.bucket, Key=key, Body=b"first", IfNoneMatch="*")
        try:
            client.put_object(Bucket=store.bucket, Key=key, Body=b"second", IfNoneMatch="*")
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status not in (409, 412):
                raise
            logger.info("the object store at %s honours conditional PUT (HTTP %d)", store.uri, status)
            return
        finally:
            client.delete_object(Bucket=store.bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise InvalidInput(
            SETTING,
            f"could not be used: {store.uri} answered the start-up probe with {exc}. Check the bucket and the "
            "AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY settings.",
        ) from exc
    raise InvalidInput(
        SETTING,
        f"points at a store that ignores conditional PUT (If-None-Match: *): a second create of the same object at "
        f"{store.uri} succeeded. LanceDB commits rely on it, so concurrent writes would be lost silently; use a store "
        "that honours it (AWS S3, Ceph radosgw, MinIO) or leave ENGRAM_STORAGE_URI unset for local storage.",
    )
