"""The S3 flavour of :class:`~retrain_assets.defs.io_managers.JsonIOManager`, through dagster-aws's S3 resource."""

from dagster_aws.s3 import S3Resource

from retrain_assets.defs.io_managers import SUFFIX, JsonIOManager


class S3JsonIOManager(JsonIOManager):
    """Values as JSON objects under ``s3://s3_bucket/s3_prefix`` through dagster-aws's S3 resource."""

    s3: S3Resource
    s3_bucket: str
    s3_prefix: str

    def _object_key(self, parts: list[str]) -> str:
        return "/".join([self.s3_prefix, *parts]).strip("/") + SUFFIX

    def _write(self, parts: list[str], payload: bytes) -> str:
        key = self._object_key(parts)
        self.s3.get_client().put_object(Bucket=self.s3_bucket, Key=key, Body=payload, ContentType="application/json")
        return f"s3://{self.s3_bucket}/{key}"

    def _read(self, parts: list[str]) -> bytes:
        key = self._object_key(parts)
        return self.s3.get_client().get_object(Bucket=self.s3_bucket, Key=key)["Body"].read()
