"""Job files (``cyclediff run``) and the evaluation harness (``cyclediff evaluate``), on the batch runner."""
