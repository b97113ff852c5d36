"""The `review` and ingest stage: Label Studio, the webhook service, reconcile, Labelme."""
