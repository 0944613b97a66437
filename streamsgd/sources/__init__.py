"""Record sources: embedded (synthetic, file/stdin) and Kafka."""
