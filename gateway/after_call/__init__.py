"""Everything after hang-up: the call's row, extraction, the post-call worker, the webhook outbox, orphan calls."""
