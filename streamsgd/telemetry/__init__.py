"""What the trainer tells its operators: Prometheus metrics (:mod:`.metrics`, with the Kafka
operations' in :mod:`.kafka_metrics` and the replicas' in :mod:`.replica_metrics`), the status
line and progress log (:mod:`.progress`) and the log format (:mod:`.logs`)."""
