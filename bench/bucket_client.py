#!/usr/bin/env python3
"""Each bucket's own parallel client, putting one local file into the same bucket filegate writes to, for
bench/buckets.sh to compare against (run with the bench venv: boto3, azure-storage-blob, google-cloud-storage).

usage: bucket_client.py MODE PATH KEY  → prints seconds
       bucket_client.py wipe STORE       → empties the bucket
  s3-loop  boto3: create, 8 MiB parts one after another, complete (the shape of one filegate chunk at a time)
  s3       boto3 upload_file: 8 MiB parts, 10 in parallel (what `aws s3 cp` does), declaring CRC32 checksums
  s3-plain the same, declaring no checksum (request_checksum_calculation="when_required"), as filegate by
           default: moto then computes a CRC64NVME of the whole object in Python when the upload completes
  azure    azure-storage-blob upload_blob: 8 MiB blocks, 10 in parallel
  gcs      google-cloud-storage transfer_manager.upload_chunks_concurrently: 8 MiB XML API parts, 10 threads
Endpoints come from the environment the services' scripts write (AWS_ENDPOINT, AZURITE_BLOB_STORAGE_URL,
FAKE_GCS_URL), always loopback: no client here may fall back to a public endpoint.
"""

import os
import sys
import time

PART = 8 << 20
THREADS = 10


def s3_client(checksums="when_supported"):
    import boto3
    from botocore.config import Config

    # The endpoint explicitly: boto3 does not read object_store's AWS_ENDPOINT.
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"],
                        config=Config(request_checksum_calculation=checksums))


def s3_loop(path, key):
    s3, bucket = s3_client(), os.environ["AWS_BUCKET"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    with open(path, "rb") as f:
        while chunk := f.read(PART):
            number = len(parts) + 1
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def s3_parallel(path, key, checksums="when_supported"):
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_chunksize=PART, max_concurrency=THREADS)
    s3_client(checksums).upload_file(path, os.environ["AWS_BUCKET"], key, Config=config)


def s3_plain(path, key):
    s3_parallel(path, key, "when_required")


def azure(path, key):
    from azure.storage.blob import BlobServiceClient

    account = os.environ["AZURE_STORAGE_ACCOUNT_NAME"]
    connection = (f"DefaultEndpointsProtocol=http;AccountName={account};"
                  f"AccountKey={os.environ['AZURE_STORAGE_ACCOUNT_KEY']};"
                  f"BlobEndpoint={os.environ['AZURITE_BLOB_STORAGE_URL']}/{account};")
    service = BlobServiceClient.from_connection_string(connection, max_block_size=PART, max_single_put_size=PART)
    blob = service.get_blob_client(os.environ["AZURE_CONTAINER_NAME"], key)
    with open(path, "rb") as f:
        blob.upload_blob(f, length=os.path.getsize(path), overwrite=True, max_concurrency=THREADS)


def gcs(path, key):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": f"{os.environ['FAKE_GCS_URL']}/gcs"})
    blob = client.bucket(os.environ["FAKE_GCS_BUCKET"]).blob(key)
    # checksum=None: the fake sends no x-goog-hash (crc32c is not in Python's standard library).
    transfer_manager.upload_chunks_concurrently(path, blob, chunk_size=PART, max_workers=THREADS,
                                                worker_type=transfer_manager.THREAD, checksum=None)


def wipe(store):
    """Deletes every object of the bench's bucket (and, on S3, every open multipart upload), so that each
    measurement starts from the same empty bucket: moto slows as it fills."""
    if store == "s3":
        s3, bucket = s3_client(), os.environ["AWS_BUCKET"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    elif store == "azure":
        from azure.storage.blob import ContainerClient

        account = os.environ["AZURE_STORAGE_ACCOUNT_NAME"]
        container = ContainerClient(f"{os.environ['AZURITE_BLOB_STORAGE_URL']}/{account}", os.environ["AZURE_CONTAINER_NAME"],
                                    credential={"account_name": account, "account_key": os.environ["AZURE_STORAGE_ACCOUNT_KEY"]})
        for blob in container.list_blobs():
            container.delete_blob(blob.name)
    elif store == "gcs":
        import re
        import urllib.request

        base = f"{os.environ['FAKE_GCS_URL']}/gcs/{os.environ['FAKE_GCS_BUCKET']}"
        listing = urllib.request.urlopen(f"{base}?list-type=2").read().decode()
        for key in re.findall(r"<Key>([^<]*)</Key>", listing):
            urllib.request.urlopen(urllib.request.Request(f"{base}/{key}", method="DELETE")).read()


def main():
    if sys.argv[1] == "wipe":
        return wipe(sys.argv[2])
    mode, path, key = sys.argv[1:4]
    run = {"s3-loop": s3_loop, "s3": s3_parallel, "s3-plain": s3_plain, "azure": azure, "gcs": gcs}[mode]
    started = time.monotonic()
    run(path, key)
    print(time.monotonic() - started)


if __name__ == "__main__":
    main()
